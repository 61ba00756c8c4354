"""Adapting to a user's scanner from unlabelled images (``echosynth adapt``): the fit of a look
(``fit``) and the command's work (``adapt``); the model it writes is the ``adapted`` family's."""
