"""Networks and the model package format (safetensors + config.json + MODEL_CARD.md)."""
