"""The one rule for outputs (``EchoSynthLib.data.outputs``, issue 30): commands never replace what they did
not write, refuse a second run on the same output, clean up what a killed run left, and leave nothing when
they fail. The bad-input table (test_bad_input.py) runs every command against inputs and users' files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.cli.main import main
from EchoSynthLib.data.io import write_label_map
from EchoSynthLib.data.outputs import MARK, new_files, output_lock, owned_folder, read_mark
from EchoSynthLib.errors import InputError
from EchoSynthLib.store.package import CARD, CONFIG, read_package_header


@pytest.fixture
def small_map(tmp_path):
    labels = phantom_label_map("4CH", "ED", seed=1, grid=PhantomGrid.for_view("4CH", size=40)).labels
    return write_label_map(labels, tmp_path / "maps" / "m.nii.gz")


def _simulator(small_map, out, *extra):
    return ["synthesize", "--model", "simulator", "--labels", str(small_map), "--out", str(out), *extra]


def test_a_second_run_on_the_same_output_is_refused_while_the_first_runs(small_map, tmp_path, capsys):
    """Two synthesize runs into one folder at once: the second is refused with one line (before: both
    exited 0 and one run's images were lost). Shards of one run write disjoint files and may run at once."""
    out = tmp_path / "out"
    with new_files(out, ["other.nii.gz"]):  # a run in progress holds the folder
        assert main(_simulator(small_map, out, "--seed", "1000")) == 2
        err = capsys.readouterr().err
        assert "another echosynth command is writing it now" in err and len(err.strip().splitlines()) == 1
        assert main(_simulator(small_map, out, "--n", "2", "--shard", "1/2")) == 0  # another part: fine
    assert sorted(p.name for p in out.iterdir()) == ["m_synth01.nii.gz"]  # and no lock or staging left
    report = tmp_path / "report"
    busy = pytest.raises(InputError, match="another echosynth")
    with owned_folder(report, "evaluate"), busy, output_lock(report):
        pass


def test_a_rerun_refuses_to_overwrite_and_cleans_what_a_killed_run_left(small_map, tmp_path, capsys):
    """After kill -9 a run's staging folder and lock file stay in --out; the next run removes them. A run
    one after the other onto the same names is refused (before: silently overwritten)."""
    out = tmp_path / "out"
    out.mkdir()
    killed = out / ".staging.all.x1y2z3"
    killed.mkdir()
    (killed / "m_synth00.nii.gz").write_bytes(b"half written")
    (out / ".echosynth.all.lock").write_text("")  # a dead run's lock: the OS released it
    assert main(_simulator(small_map, out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["m_synth00.nii.gz"]
    first = (out / "m_synth00.nii.gz").read_bytes()
    assert main(_simulator(small_map, out, "--seed", "7")) == 2
    assert "m_synth00.nii.gz: exists" in capsys.readouterr().err
    assert (out / "m_synth00.nii.gz").read_bytes() == first


def test_a_failed_run_leaves_no_output_folder(small_map, tmp_path, monkeypatch):
    """A run that fails after it started writing leaves neither its files nor the --out folder it created
    (before: an empty folder stayed)."""
    from EchoSynthLib.sampling import files

    def broken(*args, **kwargs):
        raise InputError("the network failed")

    monkeypatch.setattr(files, "write_image", broken)
    out = tmp_path / "new" / "out"
    assert main(_simulator(small_map, out)) == 2
    assert not (tmp_path / "new").exists()


def test_a_folder_is_replaced_only_by_the_command_that_wrote_it(tmp_path, capsys):
    """phantom-dataset replaces its own earlier folder (its mark says so), not the demo's nor a user's."""
    out = tmp_path / "set"
    command = ["phantom-dataset", "--n", "1", "--size", "32", "--out", str(out)]
    assert main(command) == 0 and read_mark(out) == "phantom-dataset"
    (out / "h0_4ch_ed_image.nii.gz").write_bytes(b"changed")
    assert main([*command[:-4], "--size", "24", "--out", str(out)]) == 0  # replaced whole
    assert (out / "h0_4ch_ed_image.nii.gz").read_bytes() != b"changed"
    (out / MARK).write_text(json.dumps({"written_by": "demo", "format_version": 1}))
    capsys.readouterr()
    assert main(command) == 2
    assert "'echosynth phantom-dataset' did not write" in capsys.readouterr().err
    assert (out / MARK).is_file() and len(list(out.glob("*.nii.gz"))) == 8  # 2 views x 2 phases x 2 files


def test_models_upgrade_keeps_every_component_and_the_users_files(tmp_path):
    """A format-1 adversarial package keeps discriminator.safetensors (a component now) and a user's
    notes.txt (before: the folder was rebuilt with model, card and config only)."""
    folder = tmp_path / "old"
    folder.mkdir()
    save_file({"w": torch.ones(2)}, str(folder / "model.safetensors"))
    save_file({"d": torch.zeros(3)}, str(folder / "discriminator.safetensors"))
    (folder / CONFIG).write_text(json.dumps({"format_version": 1, "kind": "segmenter2d", "channels": [4]}))
    (folder / CARD).write_text("# old card\n")
    (folder / "notes.txt").write_text("my notes")
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != CONFIG}
    assert main(["models", "upgrade", str(folder)]) == 0
    header = read_package_header(folder)
    assert sorted(c["name"] for c in header["components"]) == ["discriminator", "model"]
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != CONFIG} == before


def test_a_scratch_folder_left_by_a_killed_run_is_removed_by_the_next(tmp_path, monkeypatch):
    """``evaluate --downstream`` killed with SIGKILL left ``$TMPDIR/echosynth-downstream-*`` forever; the
    next run removes the folders whose lock no process holds, and leaves a live run's alone."""
    import subprocess
    import sys

    from EchoSynthLib.data.outputs import SCRATCH_LOCK, scratch_folder

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    dead = tmp_path / "echosynth-downstream-dead"
    dead.mkdir()
    (dead / SCRATCH_LOCK).write_text("")
    (dead / "weights.safetensors").write_bytes(b"x" * 100)
    holder = (
        "import sys, time; from EchoSynthLib.data.outputs import scratch_folder\n"
        "with scratch_folder('echosynth-downstream-') as s:\n"
        "    print(s, flush=True); time.sleep(60)\n"
    )
    live = subprocess.Popen(
        [sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True, env={**os.environ}
    )
    try:
        live_folder = Path(live.stdout.readline().strip())
        with scratch_folder("echosynth-downstream-") as mine:
            assert mine.is_dir() and not dead.exists() and live_folder.is_dir()
        assert not mine.exists()
    finally:
        live.kill()
        live.wait()


def test_an_error_line_is_never_glued_to_a_progress_bar_and_bars_count_whole_items(capsys):
    """An error while a bar is open starts on a line of its own; a bar counts whole maps or images, never
    55.50000000000001/200 (issue 30)."""
    from tqdm import tqdm

    from EchoSynthLib.cli.arguments import advance_to
    from EchoSynthLib.cli.main import _report

    bar = tqdm(total=200, desc="synthesize")
    advance_to(bar, 0.2775, 200)
    assert bar.n == 55 and isinstance(bar.n, int) and bar.postfix == "27.8% of the work"
    advance_to(bar, 0.1, 200)  # never backwards
    assert bar.n == 55
    _report("synthesize", "the network failed")
    err = capsys.readouterr().err
    assert err.endswith("\nechosynth synthesize: error: the network failed\n")


def test_an_output_from_before_folders_carried_a_mark_is_still_the_commands(tmp_path):
    """A demo folder or an evaluate report written by an earlier version (no mark) is replaced by the same
    command, recognised by all of its own files; a folder holding only one of them is a user's."""
    from EchoSynthLib.data.outputs import check_folder_output
    from EchoSynthLib.demo import DEMO_COMMAND, DEMO_FILES
    from EchoSynthLib.evaluation.report import REPORT_COMMAND, REPORT_FILES

    for command, files in ((DEMO_COMMAND, DEMO_FILES), (REPORT_COMMAND, REPORT_FILES)):
        folder = tmp_path / command
        folder.mkdir()
        (folder / files[0]).write_text("{}")
        with pytest.raises(InputError, match="did not write"):
            check_folder_output(folder, command, also_owned=files)
        for name in files:
            (folder / name).write_text("{}")
        check_folder_output(folder, command, also_owned=files)
        with owned_folder(folder, command, also_owned=files) as staging:
            (staging / "new.txt").write_text("new")
        assert sorted(p.name for p in folder.iterdir()) == [MARK, "new.txt"]


def test_a_report_file_replaces_only_its_own_earlier_report(tmp_path):
    """``validate --out report.json``: written atomically with its writer named, replaced by the same
    command's rerun, never a user's file of that name nor an input."""
    from EchoSynthLib.data.outputs import write_report

    path = tmp_path / "report.json"
    write_report(path, "validate", {"dice": 0.5})
    assert json.loads(path.read_text()) == {"written_by": "validate", "dice": 0.5}
    write_report(path, "validate", {"dice": 0.7})  # its own: replaced
    assert json.loads(path.read_text())["dice"] == 0.7
    mine = tmp_path / "mine.json"
    mine.write_text('{"dice": 1}')
    with pytest.raises(InputError, match="exists"):
        write_report(mine, "validate", {"dice": 0.7})
    with pytest.raises(InputError, match="is an input"):
        write_report(path, "validate", {"dice": 0.7}, inputs=[path])
    assert mine.read_text() == '{"dice": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.json", "report.json"]  # no lock left


def test_the_up_front_check_resolves_the_inputs_once_however_many_outputs(tmp_path, monkeypatch):
    """200 maps in, 600 names out: the inputs are resolved once, not once per output name (that was 120,000
    path resolutions, 7 s of a 35 s synthesize); an input inside the output folder is still refused."""
    from EchoSynthLib.data import outputs

    inputs = []
    for i in range(200):
        inputs.append(tmp_path / "maps" / f"m{i}.nii.gz")
        inputs[-1].parent.mkdir(exist_ok=True)
        inputs[-1].write_bytes(b"x")
    calls = []
    resolve = outputs._paths
    monkeypatch.setattr(outputs, "_paths", lambda found: calls.append(1) or resolve(found))
    outputs.check_new_files(
        tmp_path / "out", [f"m{i}_synth{k}.nii.gz" for i in range(200) for k in range(3)], inputs
    )
    assert len(calls) == 1
    with pytest.raises(InputError, match="is an input of this command"):
        outputs.check_new_files(tmp_path / "maps", ["new.nii.gz", "m7.nii.gz"], inputs[5:9])
