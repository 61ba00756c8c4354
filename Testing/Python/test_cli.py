"""The echosynth command line: happy paths, help, and one-line errors with no partial output."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from EchoSynthLib.cli.main import main
from EchoSynthLib.data.io import read_image, read_label_map, write_image
from EchoSynthLib.data.volume import Volume


def _run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_phantom_simulate_info(tmp_path, capsys):
    labels = tmp_path / "a4c.seg.nrrd"
    code, out, _ = _run(
        [
            "phantom",
            "--view",
            "4ch",
            "--size",
            "96",
            "--seed",
            "2",
            "--set",
            "lv_length_mm=80",
            "--out",
            labels,
        ],
        capsys,
    )
    assert code == 0 and "wrote" in out
    image = tmp_path / "a4c.nii.gz"
    code, _, _ = _run(["simulate", labels, "--out", image, "--seed", "1"], capsys)
    assert code == 0
    assert read_image(image).same_geometry(read_label_map(labels))
    code, out, _ = _run(["info", labels], capsys)
    assert code == 0 and "'LV cavity' -> lv_cavity" in out
    code, out, _ = _run(["info", image], capsys)
    assert code == 0 and "uint8" in out and "2D (single slice) 96x96x1" in out


def test_simulate_many_seeds_and_camus_schema(tmp_path, capsys):
    camus = np.zeros((64, 64), np.uint8)
    camus[20:40, 20:40] = 2
    camus[24:36, 24:36] = 1
    camus[40:50, 24:36] = 3
    write_image(Volume.from_2d(camus, (0.3, 0.3)), tmp_path / "camus_gt.nii.gz")
    code, out, _ = _run(
        [
            "simulate",
            tmp_path / "camus_gt.nii.gz",
            "--schema",
            "camus",
            "--n",
            "3",
            "--out",
            tmp_path / "sim.nii.gz",
            "--no-tgc",
        ],
        capsys,
    )
    assert code == 0
    assert sorted(p.name for p in tmp_path.glob("sim_s*.nii.gz")) == [f"sim_s{i}.nii.gz" for i in range(3)]
    code, out, _ = _run(["info", tmp_path / "camus_gt.nii.gz", "--schema", "camus"], capsys)
    assert "1=lv_cavity" in out and "3=left_atrium" in out


def test_synthesize_gives_every_image_of_a_run_its_own_seed(tmp_path, capsys):
    """Image i of a run, maps in order, uses seed + i: with --n 1, two copies of one map get two different
    images (the bug: every map's image 0 used the same seed, so a one-image-per-map set shared one noise)."""
    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
    from EchoSynthLib.data.io import write_label_map
    from EchoSynthLib.simulation import simulate_bmode

    labels = phantom_label_map("4CH", "ED", seed=1, grid=PhantomGrid.for_view("4CH", size=40)).labels
    for name in ("a", "b"):
        write_label_map(labels, tmp_path / "maps" / f"{name}.nii.gz")
    labels = read_label_map(tmp_path / "maps" / "a.nii.gz")  # as the command reads it
    args = ["synthesize", "--model", "simulator", "--labels", tmp_path / "maps", "--n", "2", "--seed", "7"]
    code, _, err = _run([*args, "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    made = {p.name: read_image(p).array for p in (tmp_path / "out").iterdir()}
    expected = {
        name: simulate_bmode(labels, seed).array
        for name, seed in (("a_synth00", 7), ("a_synth01", 8), ("b_synth00", 9), ("b_synth01", 10))
    }
    assert sorted(made) == [f"{n}.nii.gz" for n in sorted(expected)]
    for name, array in expected.items():
        np.testing.assert_array_equal(made[f"{name}.nii.gz"], array, err_msg=name)
    assert not np.array_equal(made["a_synth00.nii.gz"], made["b_synth00.nii.gz"])
    largest = 2**32 - 1
    code, _, err = _run([*args[:-1], largest - 2, "--out", tmp_path / "late"], capsys)
    assert code == 2 and "seed" in err and not (tmp_path / "late").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate", "{tmp}/missing.nii.gz", "--out", "{tmp}/o.nii.gz"], "no such file"),
        (["simulate", "{tmp}/bad_labels.nii.gz", "--out", "{tmp}/o.nii.gz"], "[7]"),
        (["simulate", "{tmp}/empty.nii.gz", "--out", "{tmp}/o.nii.gz"], "empty"),
        (["simulate", "{tmp}/bad_labels.nii.gz", "--out", "{tmp}/o.txt"], "unsupported file type"),
        (
            ["simulate", "{tmp}/bad_labels.nii.gz", "--out", "{tmp}/o.nii.gz", "--schema", "xyz"],
            "unknown label",
        ),
        (["simulate", "{tmp}/four_d.nrrd", "--out", "{tmp}/o.nii.gz"], "4 dimensions"),
        (["phantom", "--set", "lv_length_mm", "--out", "{tmp}/p.nii.gz"], "NAME=NUMBER"),
        (["phantom", "--set", "wall_mm=-1", "--out", "{tmp}/p.nii.gz"], "wall_mm"),
        (["phantom", "--size", "4", "--out", "{tmp}/p.nii.gz"], "at least 8"),
        (["info", "{tmp}/corrupt.nrrd"], "cannot be read"),
    ],
)
def test_errors_are_one_line_nonzero_and_write_nothing(tmp_path, capsys, args, message):
    import SimpleITK as sitk

    write_image(Volume.from_2d(np.full((8, 8), 7, np.uint8)), tmp_path / "bad_labels.nii.gz")
    write_image(Volume.from_2d(np.zeros((8, 8), np.uint8)), tmp_path / "empty.nii.gz")
    sitk.WriteImage(sitk.Image([3, 3, 3, 2], sitk.sitkUInt8), str(tmp_path / "four_d.nrrd"))
    (tmp_path / "corrupt.nrrd").write_bytes(b"NRRD0004\nsizes: x\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = _run([a.format(tmp=tmp_path) for a in args], capsys)
    assert code != 0
    assert message in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_demo_writes_images_labels_and_montage(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    code, _, _ = _run(["demo", "--out", out_dir, "--no-report"], capsys)
    assert code == 0
    names = {p.name for p in out_dir.iterdir()}
    assert {
        "montage.png",
        "manifest.json",
        "a4c_ed_image.nii.gz",
        "a2c_es_labels.nii.gz",
        "lv3d_ed_image.nrrd",
        "lv3d_ed_labels.seg.nrrd",
    } <= names
    assert (out_dir / "montage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_image(out_dir / "lv3d_ed_image.nrrd").same_geometry(
        read_label_map(out_dir / "lv3d_ed_labels.seg.nrrd")
    )
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no staging leftovers


def test_demo_runs_the_2d_maps_through_a_trained_model_when_one_is_installed(tiny_cache, tmp_path, capsys):
    """``demo --model M``: each 2D demo map through a trained generator, in OUT/M/, with the map's
    geometry; a model that is not installed is said and skipped."""
    from tiny_sdm import cli_settings

    run = tmp_path / "run"
    assert (
        main(["train", "sdm", "--data", str(tiny_cache), "--out", str(run), *cli_settings(max_steps=1)]) == 0
    )
    out_dir = tmp_path / "demo"
    code, out, _ = _run(["demo", "--out", out_dir, "--no-report", "--model", run / "model"], capsys)
    assert code == 0 and "trained model" in out
    made = sorted(p.name for p in (out_dir / "model").iterdir() if not p.name.startswith("."))
    images = [f"{stem}_image.nii.gz" for stem in ("a2c_ed", "a2c_es", "a4c_ed", "a4c_es")]
    assert made == [*images, "montage.png"]
    image = read_image(out_dir / "model" / "a4c_ed_image.nii.gz")
    assert image.same_geometry(read_label_map(out_dir / "a4c_ed_labels.nii.gz"))
    code, out, _ = _run(["demo", "--out", tmp_path / "d2", "--no-report", "--model", "no-such-model"], capsys)
    assert code == 0 and "no model images" in out and not (tmp_path / "d2" / "no-such-model").exists()


@pytest.mark.parametrize("command", [[], ["phantom"], ["simulate"], ["info"], ["demo"]])
def test_help_for_every_command(command):
    result = subprocess.run(
        [sys.executable, "-m", "EchoSynthLib.cli.main", *command, "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "usage: echosynth" in result.stdout


def test_phantom_dataset_writes_pairs_that_prepare_reads(tmp_path, capsys):
    from EchoSynthLib.cache.store import CacheIndex

    out = tmp_path / "set"
    code, _, _ = _run(["phantom-dataset", "--view", "3D", "--n", "2", "--size", "24", "--out", out], capsys)
    assert code == 0
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))  # not the folder's mark
    assert names[:2] == ["h0_3d_ed_image.nii.gz", "h0_3d_ed_labels.nii.gz"] and len(names) == 8
    assert read_image(out / names[0]).same_geometry(read_label_map(out / names[1]))
    code, _, _ = _run(["prepare", "folder", out, "--out", tmp_path / "cache", "--size", "24x24x24"], capsys)
    manifest = CacheIndex.open(tmp_path / "cache").manifest
    assert (
        code == 0 and manifest.spatial_dims == 3 and sum(c["patients"] for c in manifest.counts.values()) == 2
    )
    code, _, err = _run(["phantom-dataset", "--n", "0", "--out", tmp_path / "none"], capsys)
    assert code == 2 and "at least 1" in err and not (tmp_path / "none").exists()
