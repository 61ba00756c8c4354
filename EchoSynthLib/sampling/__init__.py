"""The work around the generators (``inference``), above the model families: images for label files
(``files``), translation of images and videos (``translate``) and paired cases from nothing (``cases``)."""
