"""The model store: the package format (``package``: safetensors + config.json + MODEL_CARD.md), the
families table (``families``: which package kind belongs to which family and task), the installed and
downloadable models (``registry``: bundled folder, user cache, manifest, installs) and first-use downloads
(``downloads``). Torch-free at import; the families' code is imported only when used."""
