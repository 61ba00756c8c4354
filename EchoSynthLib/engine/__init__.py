"""What training and inference both run on: the settings style every family's config uses (``settings``:
torch-free JSON round trips, checks, ``RunSettings``) and the device and precision choices (``device``)."""
