"""Measures on images and label maps that training and evaluation both use: Dice per structure (``dice``)
and the image measures (``image_metrics``: diversity, grey levels and speckle, power spectrum, similarity
to sources). ``EchoSynthLib.evaluation`` builds its reports on them."""
