"""The thread policy (``EchoSynthLib.cpu_threads``, issue 30): one core left free by default, ``--threads``
and ``ECHOSYNTH_THREADS`` to choose, OpenMP's passive wait unless the user chose otherwise."""

from __future__ import annotations

import pytest

from EchoSynthLib import cpu_threads
from EchoSynthLib.cli.main import main
from EchoSynthLib.errors import InputError


@pytest.fixture
def clean_environment(monkeypatch):
    for variable in ("ECHOSYNTH_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_the_thread_count_leaves_a_core_free_unless_told(clean_environment):
    monkeypatch = clean_environment
    monkeypatch.setattr(cpu_threads, "available_cores", lambda: 8)
    assert cpu_threads.thread_count() == 7
    monkeypatch.setattr(cpu_threads, "available_cores", lambda: 1)
    assert cpu_threads.thread_count() == 1  # never 0
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads.thread_count() == 3  # the user's OpenMP setting
    monkeypatch.setenv("ECHOSYNTH_THREADS", "2")
    assert cpu_threads.thread_count() == 2  # EchoSynth's own before OpenMP's
    assert cpu_threads.thread_count(5) == 5  # --threads before both
    monkeypatch.setenv("ECHOSYNTH_THREADS", "many")
    with pytest.raises(InputError, match="ECHOSYNTH_THREADS must be a whole number"):
        cpu_threads.thread_count()
    with pytest.raises(InputError, match="at least 1"):
        cpu_threads.thread_count(0)


def test_openmp_waits_passively_unless_the_user_chose(clean_environment):
    import os

    cpu_threads.prepare_environment()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    clean_environment.setenv("OMP_WAIT_POLICY", "ACTIVE")
    cpu_threads.prepare_environment()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_a_computing_command_runs_on_the_policys_threads(clean_environment, tmp_path, capsys):
    """``synthesize --threads 1`` sets torch's thread count (and OMP_NUM_THREADS, which torch reads when a
    path that needs it imports it); without it, one core is left free; a command that computes nothing
    (``phantom``) does not touch the threads."""
    import os

    import torch

    seen = []
    clean_environment.setattr(torch, "set_num_threads", seen.append)
    clean_environment.setattr(cpu_threads, "available_cores", lambda: 4)
    assert main(["phantom", "--out", str(tmp_path / "m.nii.gz"), "--size", "32"]) == 0
    assert seen == []
    command = ["synthesize", "--model", "simulator", "--labels", str(tmp_path / "m.nii.gz")]
    assert main([*command, "--out", str(tmp_path / "a"), "--threads", "1"]) == 0
    assert os.environ["OMP_NUM_THREADS"] == "1"
    clean_environment.delenv("OMP_NUM_THREADS")
    assert main([*command, "--out", str(tmp_path / "b")]) == 0
    assert seen == [1, 3] and os.environ["OMP_NUM_THREADS"] == "3"
    assert main([*command, "--out", str(tmp_path / "c"), "--threads", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
