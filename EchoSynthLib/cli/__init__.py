"""The ``echosynth`` command line."""
