"""The training cache: built by ``echosynth prepare`` (``store``), read by trainers (``dataset``, torch)."""
