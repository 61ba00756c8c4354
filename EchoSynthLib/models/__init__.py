"""The model families, one folder each (``sdm``, ``segmenter``, ``features``, ``autoencoder``, ``latent``,
``adversarial``): settings, networks, trainer and inference pipeline. The package format and the model
store are ``EchoSynthLib.store``."""
