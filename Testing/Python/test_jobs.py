"""Worker jobs (spec, worker, process), planes of 3D maps, generators and the headless batch script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.data.io import read_image, read_label_map, write_image, write_label_map
from EchoSynthLib.data.planes import slice_of
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.engine.device import pick_device
from EchoSynthLib.errors import InputError
from EchoSynthLib.inference.generators import GeneratorSettings, SimulatorGenerator, open_generator
from EchoSynthLib.jobs.launcher import (
    CREATE_NO_WINDOW,
    JobFailed,
    JobProcess,
    child_environment,
    library_root,
    parse_event,
    popen_options,
)
from EchoSynthLib.jobs.spec import OUTPUT_DIR, RESULT_FILE, JobSpec, read_result
from EchoSynthLib.jobs.worker import main as worker_main

ROOT = Path(__file__).resolve().parents[2]
BATCH = ROOT / "EchoSynth" / "Resources" / "Scripts" / "batch_synthesize.py"


@pytest.fixture(scope="module")
def small_map() -> Volume:
    return phantom_label_map("4CH", "ED", seed=4, grid=PhantomGrid.for_view("4CH", size=40)).labels


def _job(folder: Path, labels: Volume, **settings) -> JobSpec:
    write_label_map(labels, folder / "in.nrrd")
    spec = JobSpec(inputs=("in.nrrd",), **settings)
    spec.write(folder)
    return spec


def test_job_spec_round_trip_and_refusals(tmp_path):
    spec = JobSpec(inputs=("a.nrrd",), n=3, augment=1, slice_index=2)
    assert JobSpec.read(spec.write(tmp_path).parent) == spec
    with pytest.raises(InputError, match="at least one input"):
        JobSpec(inputs=())
    # the generator settings' checks hold for a job too (before: accepted, and only the worker failed)
    with pytest.raises(InputError, match="strength"):
        JobSpec(inputs=("a.nrrd",), strength=5.0)
    with pytest.raises(InputError, match="bogus"):
        JobSpec(inputs=("a.nrrd",), sampler="bogus")
    with pytest.raises(InputError, match="acquisition 'wide'"):
        JobSpec(inputs=("a.nrrd",), augment=1, acquisition="wide")
    with pytest.raises(InputError, match="goes with new anatomies"):
        JobSpec(inputs=("a.nrrd",), acquisition="varied")  # accepted and ignored before
    document = json.loads((tmp_path / "job.json").read_text())
    (tmp_path / "job.json").write_text(json.dumps(document | {"format_version": 7}))
    with pytest.raises(InputError, match="job format version 7"):
        JobSpec.read(tmp_path)
    (tmp_path / "job.json").write_text(json.dumps(document | {"frames": 3}))
    with pytest.raises(InputError, match="unknown setting"):
        JobSpec.read(tmp_path)


def test_worker_reports_progress_and_writes_its_result(tmp_path, small_map, capsys):
    _job(tmp_path, small_map, n=2, augment=1, seed=5)
    assert worker_main([str(tmp_path)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    (result,), warnings = read_result(tmp_path)
    assert warnings == [] and result.input == "in.nrrd" and len(result.images) == 2
    ((labels, images),) = result.augmented
    assert labels.startswith(OUTPUT_DIR) and len(images) == 2
    image = read_image(tmp_path / result.images[0])
    assert image.same_geometry(small_map)


def test_worker_shows_new_anatomies_in_varied_acquisitions(tmp_path, small_map, capsys):
    _job(tmp_path, small_map, augment=3, acquisition="varied")
    assert worker_main([str(tmp_path)]) == 0
    (result,), _ = read_result(tmp_path)
    sectors = [int((read_label_map(tmp_path / labels).array != 0).sum()) for labels, _ in result.augmented]
    inside = int((small_map.array != 0).sum())
    assert len(sectors) == 3 and max(sectors) <= inside and min(sectors) < inside


def test_worker_errors_are_one_event_and_exit_two(tmp_path, small_map, capsys):
    _job(tmp_path, small_map.with_array(np.zeros_like(small_map.array)))
    assert worker_main([str(tmp_path)]) == 2
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["start", "error"]
    assert "no heart structure" in events[-1]["message"]
    assert not (tmp_path / RESULT_FILE).exists()
    assert not any(p.is_file() for p in (tmp_path / OUTPUT_DIR).rglob("*"))
    assert worker_main([str(tmp_path / "missing")]) == 2
    assert worker_main([]) == 2


def test_process_runs_a_worker_and_reports_failures(tmp_path, small_map):
    (tmp_path / "ok").mkdir()
    _job(tmp_path / "ok", small_map)
    events = []
    JobProcess(tmp_path / "ok", device="cpu").wait(on_event=events.append, timeout=120)
    assert events[-1].kind == "done" and (tmp_path / "ok" / RESULT_FILE).is_file()
    (tmp_path / "bad").mkdir()
    with pytest.raises(JobFailed, match=r"job\.json: no such file"):
        JobProcess(tmp_path / "bad").wait(timeout=120)


def test_child_environment_and_event_parsing():
    env = child_environment("cpu", {"PYTHONPATH": "/elsewhere"})
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONPATH"].split(":")[:2] == [str(library_root()), "/elsewhere"]
    assert "CUDA_VISIBLE_DEVICES" not in child_environment("auto", {})
    assert parse_event('{"event": "progress", "fraction": 0.5, "message": "a"}').fraction == 0.5
    assert parse_event("plain text\n").kind == "log"


def test_the_worker_gets_its_own_process_group_and_no_console_window():
    assert popen_options(windows=False) == {"start_new_session": True}
    flags = popen_options(windows=True)["creationflags"]
    assert flags & CREATE_NO_WINDOW and flags & 0x00000200  # CREATE_NEW_PROCESS_GROUP, for taskkill /T


def test_a_gpu_asked_for_without_one_falls_back_with_a_warning():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    warnings = []
    assert pick_device("gpu", warnings.append).type == "cpu"
    assert "no CUDA GPU" in warnings[0]
    with pytest.raises(InputError, match="no CUDA GPU"):
        pick_device("cuda")
    with pytest.raises(InputError, match="unknown device"):
        pick_device("tpu:9")


def test_planes_keep_their_place_in_space():
    labels = phantom_label_map("3D", "ED", seed=1, grid=PhantomGrid.for_view("3D", size=20)).labels
    volume = Volume(labels.array, (0.5, 0.7, 1.1), (3.0, -2.0, 9.0), labels.direction)
    for plane, index in (("ij", 4), ("kj", 7)):
        cut = slice_of(volume, index, plane)
        assert cut.is_2d
        rows, cols = cut.array.shape[1:]
        for j, i in ((0, 0), (rows - 1, cols - 1), (3, 5)):
            point = cut.ijk_to_lps() @ [i, j, 0, 1]
            voxel = np.rint(np.linalg.solve(volume.ijk_to_lps(), point)).astype(int)
            assert cut.array[0, j, i] == volume.array[voxel[2], voxel[1], voxel[0]]
    assert slice_of(volume, plane="kj").array.shape == (1, 20, 20)
    with pytest.raises(InputError, match="outside the volume"):
        slice_of(volume, 99)
    with pytest.raises(InputError, match="unknown plane"):
        slice_of(volume, 1, "ik")


def test_generators(small_map):
    generator = open_generator("simulator")
    assert isinstance(generator, SimulatorGenerator)
    seen = []
    images = generator.generate(generator.prepare(small_map), 2, seed=1, progress=seen.append)
    assert seen == [0.5, 1.0] and all(i.same_geometry(small_map) for i in images)
    with pytest.raises(InputError, match="no heart structure"):
        generator.prepare(small_map.with_array(np.zeros_like(small_map.array)))
    with pytest.raises(InputError, match="sampler"):
        open_generator(GeneratorSettings("any", sampler="euler"))


def test_batch_script_runs_with_plain_python_on_a_folder(tmp_path, small_map):
    maps = tmp_path / "maps"
    maps.mkdir()
    write_label_map(small_map, maps / "a.seg.nrrd")
    write_label_map(small_map, maps / "b.nii.gz")
    command = [sys.executable, str(BATCH), "--model", "simulator", "--labels", str(maps), "--n", "2"]
    done = subprocess.run([*command, "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["a_synth00.nrrd", "a_synth01.nrrd", "b_synth00.nii.gz", "b_synth01.nii.gz"]
    (maps / "c.nii.gz").write_bytes(b"not an image")
    failed = subprocess.run([*command, "--out", str(tmp_path / "none")], capture_output=True, text=True)
    assert failed.returncode == 2 and "c.nii.gz" in failed.stderr
    assert not any((tmp_path / "none").glob("*.n*"))


def test_an_adapt_job_passes_its_way_back_and_reports_its_steps(tmp_path, small_map, monkeypatch, capsys):
    """The worker gives ``way_back`` to the adaptation and reports its steps after the fit's rounds."""
    from EchoSynthLib.adaptation import adapt as adaptation
    from EchoSynthLib.jobs.spec import ADAPT, ADAPTED_MODEL
    from EchoSynthLib.jobs.worker import ADAPT_FIT_SHARE

    seen = {}

    def fake(settings, progress, warn):
        seen["way_back"] = settings.way_back
        for stage, done, total in (("draw", 8, 8), ("fit", 1, 1), ("way back", 5, 10), ("way back", 10, 10)):
            progress(stage, done, total)
        return tmp_path / ADAPTED_MODEL

    monkeypatch.setattr(adaptation, "adapt", fake)
    write_image(small_map, tmp_path / "inputs" / "a.nrrd")
    JobSpec(task=ADAPT, inputs=("inputs/a.nrrd",), generator="simulator", way_back=10).write(tmp_path)
    assert worker_main([str(tmp_path)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert seen["way_back"] == 10
    halfway = ADAPT_FIT_SHARE + 0.5 * (1 - ADAPT_FIT_SHARE)
    assert fractions[1] == ADAPT_FIT_SHARE and fractions[2:] == [halfway, 1.0]
    assert any("way back step 5/10" in e.get("message", "") for e in events)
