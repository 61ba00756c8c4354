"""Drawing images: the Generator contract every label map -> image family builds on (``generators``: the
simulator or a model package, with the sampling options of ``options`` and the grids of ``grids``), and
the work around it: images for label files (``files``), translation of images (``translate``) and
paired cases from nothing (``pairs``)."""
