"""Synthesis jobs run in a separate process, files in and files out (the Slicer module's worker).

``spec``: the job file (what to make from which label files); ``worker``: runs a job and reports progress
as JSON lines on stdout (``python -m EchoSynthLib.jobs.worker JOB.json``); ``process``: starts a worker,
reads its reports without blocking, and cancels it with its whole process tree.
"""
