"""The training engine every family's trainer runs on: resumable step runs with safetensors checkpoints
(``runs``), PyTorch DDP under torchrun (``distributed``) and model cards (``cards``)."""
