"""Evaluation: ``echosynth evaluate`` (image sets on one grid, feature spaces, distribution measures,
memorisation, the downstream protocol, figures, the report page and its terminal summary) and the
label-adherence report of ``echosynth generate validate`` (``adherence``)."""
