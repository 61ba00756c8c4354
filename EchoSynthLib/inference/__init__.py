"""The layer under the model families for drawing images: the Generator contract (``generators``: the
simulator or a model package behind one interface, ``GeneratorSettings`` made from the sampling options
declared once in ``options``), the grids around a model (``grids``) and the one label-to-image pipeline
every label-conditioned family builds on (``pipeline``)."""
