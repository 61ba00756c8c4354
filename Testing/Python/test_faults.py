"""kill -9 at the worst moments: between the two renames of a folder swap, at random points of training
and export, and at every rename of a model install. Nothing corrupt is ever left, resumed training ends
with the same model bytes as an uninterrupted run, and an install leaves the old or the new package."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tiny_sdm import cli_settings

from EchoSynthLib.cli.main import main
from EchoSynthLib.data.atomic import staged_directory
from EchoSynthLib.training.runs import has_checkpoint

SETTINGS = cli_settings(batch_size=2, sample_every=4, log_every=1, val_every=1000, max_steps=10)

# A child that runs ``code`` with os.replace patched to SIGKILL the process right after rename number
# KILL_AT (counting from 1) whose destination's name is NAME.
KILLER = """
import os, signal, sys
from pathlib import Path
_real, _count = os.replace, [0]
def _replace(source, destination):
    _real(source, destination)
    if Path(destination).name == sys.argv[2]:
        _count[0] += 1
        if _count[0] == int(sys.argv[1]):
            os.kill(os.getpid(), signal.SIGKILL)
os.replace = _replace
"""


def _run_killer(code: str, kill_at: int, name: str, *args: str) -> int:
    script = KILLER + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script, str(kill_at), name, *args], capture_output=True)
    return done.returncode


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_kill_between_the_two_renames_keeps_the_previous_checkpoint(tmp_path):
    run = tmp_path / "run"
    with staged_directory(run / "checkpoint") as staging:
        (staging / "state.json").write_text('{"step": 1}')
    code = """
        from EchoSynthLib.data.atomic import staged_directory
        with staged_directory(Path(sys.argv[3]) / "checkpoint") as staging:
            (staging / "state.json").write_text('{"step": 2}')
    """
    # Rename 1 moves checkpoint/ into .checkpoint.X.old/; the kill comes before rename 2.
    assert _run_killer(code, 1, "checkpoint", str(run)) == -signal.SIGKILL
    assert not (run / "checkpoint").exists() and any(run.glob(".checkpoint.*.old"))
    assert has_checkpoint(run)  # recovered
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 1
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint"]  # leftovers cleaned


def _train(cache: Path, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "EchoSynthLib.cli.main", "train", "sdm", "--data", str(cache)]
    return subprocess.Popen(
        [*command, "--out", str(out), "--device", "cpu", *SETTINGS],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _step(run: Path) -> int:
    try:
        return json.loads((run / "checkpoint" / "state.json").read_text())["step"]
    except (OSError, ValueError):
        return 0


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_training_killed_at_random_points_resumes_to_the_same_model(tiny_cache, tmp_path):
    reference = tmp_path / "reference"
    assert main(["train", "sdm", "--data", str(tiny_cache), "--out", str(reference), *SETTINGS]) == 0
    run = tmp_path / "run"
    chance = random.Random(11)
    for wait_for in (3, 9):  # kill after these checkpoints, a random moment later
        process = _train(tiny_cache, run)
        deadline = time.monotonic() + 120
        while _step(run) < wait_for and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(chance.uniform(0.0, 0.15))
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert _train(tiny_cache, run).wait(timeout=300) == 0
    for name in ("model.safetensors", "config.json", "MODEL_CARD.md"):
        assert _digest(run / "model" / name) == _digest(reference / "model" / name), name
    assert (run / "samples" / "step_000010.png").is_file()
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no staging or retired folders


@pytest.fixture
def two_packages(tmp_path):
    import torch

    from EchoSynthLib.store.package import save_package

    old = save_package(tmp_path / "old" / "tiny", "sdm2d", {"version": "1"}, {"w": torch.zeros(64)}, "old")
    new = save_package(tmp_path / "new" / "tiny", "sdm2d", {"version": "1"}, {"w": torch.ones(64)}, "new")
    return old, new


def test_a_model_install_killed_at_any_rename_leaves_the_old_or_the_new_package(two_packages, tmp_path):
    from EchoSynthLib.store.registry import install_from_folder, installed_models

    old, new = two_packages
    cache = tmp_path / "cache"
    install_from_folder(old, cache_dir=cache)
    digests = {_digest(old / "model.safetensors"), _digest(new / "model.safetensors")}
    code = """
        from EchoSynthLib.store.registry import install_from_folder
        install_from_folder(sys.argv[3], cache_dir=sys.argv[4])
    """
    # Every rename an install makes inside the cache: staged files and folders, the swap's two renames.
    kill_at, outcomes = 1, set()
    while True:
        returncode = _run_killer(code, kill_at, "tiny", str(new), str(cache))
        (model,) = installed_models(cache_dir=cache, bundled_dir=tmp_path / "none")  # recovers a swap
        assert _digest(model.path / "model.safetensors") in digests
        outcomes.add((model.path / "MODEL_CARD.md").read_text())
        if returncode == 0:
            break
        assert returncode == -signal.SIGKILL
        install_from_folder(old, cache_dir=cache)  # back to the old package for the next kill point
        kill_at += 1
    assert kill_at >= 2 and outcomes == {"old", "new"}
    install_from_folder(new, cache_dir=cache)
    assert sorted(os.listdir(cache)) == ["tiny"]  # leftovers of the kills are gone
