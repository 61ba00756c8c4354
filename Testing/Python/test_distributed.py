"""Training under torchrun (DDP, gloo on CPU): the same command, the same result as one process with the
same global batch, only the main process writes, and a run with a killed process resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_sdm import cli_settings

from EchoSynthLib.cli.main import main
from EchoSynthLib.errors import InputError
from EchoSynthLib.training.distributed import Rank

SETTINGS = cli_settings(batch_size=4, log_every=2, val_every=1000, max_steps=6)


def _torchrun(cache: Path, out: Path, processes: int = 2) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command += ["-m", "EchoSynthLib.cli.main", "train", "sdm", "--data", str(cache), "--out", str(out)]
    return subprocess.Popen(
        [*command, "--device", "cpu", *SETTINGS], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc: no process tools needed)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*"))


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def _assert_same_weights(a: Path, b: Path) -> None:
    first, second = _weights(a), _weights(b)
    assert first.keys() == second.keys()
    for key in first:  # equal up to the order of the floating-point reduction over processes
        torch.testing.assert_close(first[key], second[key], rtol=1e-4, atol=1e-5, msg=key)


def test_the_global_batch_is_shared_out_and_must_split_evenly():
    batch = list(range(8))
    parts = [Rank(i, 3).part(batch) for i in range(3)]
    assert sorted(i for part in parts for i in part) == batch and parts[1] == [1, 4, 7]
    Rank(0, 2).check_batch(4)
    with pytest.raises(InputError, match="batch_size 5 does not split over 2 processes"):
        Rank(0, 2).check_batch(5)


@pytest.fixture(scope="module")
def single(tiny_cache, tmp_path_factory) -> Path:
    """The same training in one process."""
    run = tmp_path_factory.mktemp("single") / "run"
    assert (
        main(["train", "sdm", "--data", str(tiny_cache), "--out", str(run), "--device", "cpu", *SETTINGS])
        == 0
    )
    return run


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_two_processes_train_like_one(tiny_cache, single, tmp_path):
    run = tmp_path / "ddp"
    process = _torchrun(tiny_cache, run)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert output.count("training sdm on cpu (process 0 of 2)") == 1  # only the main process speaks
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 6
    assert _files(run) == _files(single)  # the same files, written once
    logged = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert logged == [2, 4, 6]
    _assert_same_weights(run, single)


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_a_killed_process_and_a_rerun_resume_the_run(tiny_cache, single, tmp_path):
    run = tmp_path / "ddp"
    process = _torchrun(tiny_cache, run)
    deadline = time.monotonic() + 240
    state = run / "checkpoint" / "state.json"
    while time.monotonic() < deadline and process.poll() is None:
        if state.is_file() and json.loads(state.read_text() or "{}").get("step", 0) >= 2:
            break
        time.sleep(0.05)
    workers = _children(process.pid)
    assert workers, "torchrun started no processes"
    os.kill(workers[-1], signal.SIGKILL)  # one rank dies; torchrun stops the rest
    process.communicate(timeout=120)
    assert process.returncode != 0
    rerun = _torchrun(tiny_cache, run)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output
    assert "step 0 of" not in output  # resumed, not restarted
    assert json.loads(state.read_text())["step"] == 6
    _assert_same_weights(run, single)


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_sharded_synthesis_writes_the_files_of_one_run(tmp_path, monkeypatch, capsys):
    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
    from EchoSynthLib.data.io import write_label_map

    for name, seed in (("a", 1), ("b", 2)):
        labels = phantom_label_map("4CH", "ED", seed=seed, grid=PhantomGrid.for_view("4CH", size=40)).labels
        write_label_map(labels, tmp_path / "maps" / f"{name}.nii.gz")
    args = ["synthesize", "--model", "simulator", "--labels", str(tmp_path / "maps"), "--n", "3"]
    args += ["--augment", "1", "--seed", "5"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    for shard in ("0/3", "1/3", "2/3"):
        assert main([*args, "--out", str(tmp_path / "sharded"), "--shard", shard]) == 0
    for rank in ("0", "1"):  # under torchrun the shard comes from the environment
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert main([*args, "--out", str(tmp_path / "ranks")]) == 0
    one = {p.name: p.read_bytes() for p in (tmp_path / "one").iterdir()}
    assert len(one) == 2 * 2 * 3 + 2  # images of 2 maps and 2 new anatomies, and the 2 anatomies
    for folder in ("sharded", "ranks"):
        assert {p.name: p.read_bytes() for p in (tmp_path / folder).iterdir()} == one, folder
    monkeypatch.delenv("RANK")
    assert main([*args, "--out", str(tmp_path / "x"), "--shard", "3/3"]) == 2
    assert "0 <= K < N" in capsys.readouterr().err


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_the_adversarial_family_trains_under_torchrun_like_one_process(tiny_cache, tmp_path):
    """Two networks, two optimizers, the R1 penalty (a gradient of the discriminator's output through
    DDP) and the EMA: two processes give the one-process result."""
    from conftest import TINY_ADVERSARIAL

    values = {**TINY_ADVERSARIAL, "workers": 0, "max_steps": 4, "log_every": 2, "val_every": 1000}
    values |= {"checkpoint_every": 4, "sample_every": 1000}
    settings = [f"--set={k}={json.dumps(v)}" for k, v in values.items()]
    command = ["train", "adversarial", "--data", str(tiny_cache), "--device", "cpu", *settings]
    assert main([*command, "--out", str(tmp_path / "single")]) == 0
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    process = subprocess.run(
        [*launcher, "-m", "EchoSynthLib.cli.main", *command, "--out", str(tmp_path / "ddp")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    log = (tmp_path / "ddp" / "log.jsonl").read_text()
    assert '"r1"' in log
    _assert_same_weights(tmp_path / "ddp", tmp_path / "single")
    single = load_file(str(tmp_path / "single" / "model" / "discriminator.safetensors"))
    ddp = load_file(str(tmp_path / "ddp" / "model" / "discriminator.safetensors"))
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=1e-4, atol=1e-5, msg=key)
