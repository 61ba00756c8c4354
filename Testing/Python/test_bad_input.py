"""Every kind of bad input in docs/RELIABILITY.md, through the real command line or the Python API.

Each command-line case asserts exit status 2, exactly one line on stderr naming the problem, nothing
written (no output, no staging folder, no run folder: the workspace is the same file for file), and every
input byte-identical (SHA-256). Each API case asserts an InputError with a one-line message. The table in
docs/RELIABILITY.md lists exactly these cases (a test checks that).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from tiny_sdm import cli_settings

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.cache.store import build_cache
from EchoSynthLib.cli.main import main
from EchoSynthLib.data.io import write_image, write_label_map
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.datasets import scan_dataset
from EchoSynthLib.errors import InputError
from EchoSynthLib.preprocessing.prepare import PrepareSettings
from EchoSynthLib.simulation import simulate_bmode

ROOT = Path(__file__).resolve().parents[2]
RELIABILITY = ROOT / "docs" / "RELIABILITY.md"
TINY_SET = cli_settings(batch_size=2)
MARKER = "pickle-ran"


class _Exploit:
    """A pickle that would create a file if it were ever unpickled."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def _truncate(source: Path, target: Path) -> None:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) * 2 // 3])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_cache, tiny_paired_model, tiny_adversarial) -> Path:
    """Every input the cases use, made once."""
    import shutil

    w = tmp_path_factory.mktemp("bad-input")
    shutil.copytree(tiny_paired_model, w / "paired")
    shutil.copytree(tiny_adversarial.run / "model", w / "adversarial")
    labels = phantom_label_map("4CH", "ED", seed=2, grid=PhantomGrid.for_view("4CH", size=48)).labels
    write_label_map(labels, w / "map.nii.gz")
    write_label_map(labels, w / "map.seg.nrrd")
    write_image(Volume.from_2d(np.full((16, 16), 7, np.uint8)), w / "bad_values.nii.gz")
    write_image(Volume.from_2d(np.zeros((16, 16), np.uint8)), w / "empty.nii.gz")
    write_image(Volume.from_2d(np.ones((1, 1), np.uint8)), w / "tiny.nii.gz")
    float_map = labels.array.astype(np.float32)
    float_map[0, 3, 3] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(float_map), str(w / "nan.nii.gz"))
    infinite = labels.array.astype(np.float32)
    infinite[0, 3, 3] = np.inf
    sitk.WriteImage(sitk.GetImageFromArray(infinite), str(w / "inf.nrrd"))
    volume = sitk.GetImageFromArray(labels.array.astype(np.uint8))
    for suffix in ("nii.gz", "nii", "mha", "nrrd"):
        sitk.WriteImage(volume, str(w / f"whole.{suffix}"), useCompression=suffix == "nii.gz")
        _truncate(w / f"whole.{suffix}", w / f"truncated.{suffix}")
    sitk.WriteImage(sitk.Image([3, 3, 3, 2], sitk.sitkUInt8), str(w / "four_d.nrrd"))
    (w / "corrupt.nrrd").write_bytes(b"NRRD0004\nsizes: x\n")
    (w / "text.nii.gz").write_bytes(b"not an image")
    for folder in ("d1", "d2"):
        (w / folder).mkdir()
        write_label_map(labels, w / folder / "x.nii.gz")
    (w / "pair").mkdir()
    write_label_map(labels, w / "pair" / "a.seg.nrrd")
    write_label_map(labels, w / "pair" / "a.nrrd")
    (w / "a_file").write_text("a file, not a folder")
    (w / "foreign").mkdir()
    (w / "foreign" / "notes.txt").write_text("not a model")
    (w / "no_images").mkdir()
    (w / "old_cases").mkdir()
    (w / "old_cases" / "case_0000_image.nrrd").write_text("an earlier case")
    (w / "synthetic").mkdir()  # one simulated image with its label map, as evaluate reads them
    write_image(simulate_bmode(labels, seed=0), w / "synthetic" / "x_image.nii.gz")
    write_label_map(labels, w / "synthetic" / "x_labels.nii.gz")
    write_label_map(labels.with_array(np.zeros_like(labels.array)), w / "empty_map.nii.gz")
    write_image(Volume(np.full((3, 8, 8), 9, np.uint8), (1.0, 1.0, 1.0)), w / "volume3d.nii.gz")
    _packages(w)
    _runs(w, tiny_cache)
    _damaged_caches(w, tiny_cache)
    _val_only_cache(w)
    (w / "empty.safetensors").write_bytes(b"")
    (w / "pickle.safetensors").write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    (w / "list.json").write_text("[1, 2]")
    for name, spacing in (("tiny_spacing", 1e-30), ("huge_spacing", 1e30)):  # a map's voxel size in mm
        odd = sitk.GetImageFromArray(labels.array.astype(np.uint8))
        odd.SetSpacing((spacing, spacing, 1.0))
        sitk.WriteImage(odd, str(w / f"{name}.nrrd"))
    (w / "earlier").mkdir()  # an earlier synthesize run's image
    (w / "earlier" / "map_synth00.nii.gz").write_text("an earlier image")
    (w / "camus").mkdir()  # a dataset root for prepare
    np.savez(w / "camus" / "camus224_train.npz", images=np.zeros((1, 8, 8), np.uint8),
             labels=np.zeros((1, 8, 8), np.uint8), ids=np.array(["patient0001_4CH_ED"]))  # fmt: skip
    return w


def _damaged_caches(w: Path, cache: Path) -> None:
    """Copies of the tiny cache with the first file of each split damaged, and a CAMUS-224 root whose
    archive is cut short: what training and evaluation only tripped over late (issue 30)."""
    import shutil

    for name in ("cache_object", "cache_nan", "cache_cut"):
        shutil.copytree(cache, w / name)
        for split in ("train", "val"):
            first = sorted((w / name / split).glob("*.npz"))[0]
            with np.load(first) as data:
                image, labels = data["image"], data["labels"]
            if name == "cache_object":
                np.savez(first, image=np.array([None, 1], dtype=object), labels=labels)
            elif name == "cache_nan":
                image = image.copy()
                image.flat[0] = np.nan
                np.savez(first, image=image, labels=labels)
            else:
                _truncate(first, first)
    (w / "camus_cut").mkdir()
    np.savez(w / "camus_cut" / "camus224_train.npz", images=np.zeros((4, 16, 16), np.uint8),
             labels=np.zeros((4, 16, 16), np.uint8), ids=np.array([f"patient000{i}_4CH_ED" for i in range(4)]))  # fmt: skip
    _truncate(w / "camus_cut" / "camus224_train.npz", w / "camus_cut" / "camus224_train.npz")


def _val_only_cache(w: Path) -> None:
    """A cache (``cache_val_only``) of one phantom patient, ED and ES, all in the validation split."""
    (w / "val_only").mkdir()
    for phase in ("ED", "ES"):
        phantom = phantom_label_map("4CH", phase, seed=0, grid=PhantomGrid.for_view("4CH", size=32))
        write_image(simulate_bmode(phantom.labels, seed=0), w / "val_only" / f"pt0_{phase}.nii.gz")
        write_label_map(phantom.labels, w / "val_only" / f"pt0_{phase}_label.nii.gz")
    fractions = {"train": 0.0, "val": 1.0, "test": 0.0}
    settings = PrepareSettings(size=(16, 16), split_fractions=fractions)
    build_cache(scan_dataset("folder", w / "val_only"), w / "cache_val_only", settings)


def _packages(w: Path) -> None:
    import torch

    from EchoSynthLib.store.families import SEGMENTER_KIND
    from EchoSynthLib.store.package import save_package

    save_package(w / "segmenter", SEGMENTER_KIND, {"version": "1"}, {"w": torch.zeros(2)}, "card")
    save_package(w / "linked", "sdm2d", {"version": "1"}, {"w": torch.zeros(2)}, "card")
    (w / "outside.txt").write_text("a file outside the package")
    (w / "linked" / "extra.txt").symlink_to(w / "outside.txt")
    save_package(w / "looped", "sdm2d", {"version": "1"}, {"w": torch.zeros(2)}, "card")
    (w / "looped" / "self").symlink_to(w / "looped")


def _runs(w: Path, cache: Path) -> None:
    """A run whose config.json is not JSON, and two one-step runs with damaged checkpoints."""
    (w / "run_json").mkdir()
    (w / "run_json" / "config.json").write_text("{ not json")
    for name in ("run_truncated", "run_pickle"):
        assert main(["train", "sdm", "--data", str(cache), "--out", str(w / name), *TINY_SET,
                     "--set=max_steps=1"]) == 0  # fmt: skip
    checkpoint = w / "run_truncated" / "checkpoint" / "model.safetensors"
    _truncate(checkpoint, checkpoint)
    (w / "run_pickle" / "checkpoint" / "optimizer.pt").write_bytes(pickle.dumps(_Exploit()))


TRAIN = ["train", "sdm", "--data", "{cache}", *TINY_SET]
EVALUATE = ["evaluate", "--real", "{cache}", "--synthetic", "{w}/synthetic"]
SIMULATOR = ["synthesize", "--model", "simulator", "--labels"]
# Issue 30: an output that is, holds or lies inside an input, or that another command (or the user) put
# there, is refused before any work; nothing is replaced (the snapshot check below).
OUTPUT_CASES = [
    ("evaluate-out-is-real-cache", "evaluate --out CACHE (the real images)", [*EVALUATE, "--out", "{cache}"], "is an input"),
    ("evaluate-out-is-labels", "evaluate --labels L --out L", [*EVALUATE, "--labels", "{w}/d1", "--out", "{w}/d1"], "is an input"),
    ("evaluate-out-user-folder", "evaluate --out a folder holding a user's file", [*EVALUATE, "--out", "{w}/foreign"], "did not write"),
    ("evaluate-out-file", "evaluate --out a file", [*EVALUATE, "--out", "{w}/a_file"], "not a folder"),
    ("evaluate-filter-is-out", "evaluate --filter X --out X", [*EVALUATE, "--filter", "{w}/r", "--out", "{w}/r"], "--filter and --out"),
    ("evaluate-out-holds-input", "evaluate --out a folder holding the synthetic set", [*EVALUATE, "--out", "{w}"], "holds the input"),
    ("phantom-dataset-onto-file", "phantom-dataset --out a label file", ["phantom-dataset", "--n", "1", "--out", "{w}/map.nii.gz"], "not a folder"),
    ("phantom-dataset-onto-dataset", "phantom-dataset --out a folder of .npz files", ["phantom-dataset", "--n", "1", "--out", "{w}/camus"], "did not write"),
    ("prepare-onto-root", "prepare camus224 ROOT --out ROOT", ["prepare", "camus224", "{w}/camus", "--out", "{w}/camus"], "is an input"),
    ("prepare-onto-user-folder", "prepare --out a folder holding a user's file", ["prepare", "camus224", "{w}/camus", "--out", "{w}/foreign"], "did not write"),
    ("train-into-cache", "train --data C --out C", [*TRAIN, "--out", "{cache}"], "is an input"),
    ("train-into-user-folder", "train --out a folder that is no run", [*TRAIN, "--out", "{w}/foreign"], "did not write"),
    ("demo-onto-user-folder", "demo --out a folder holding a user's file", ["demo", "--no-report", "--out", "{w}/foreign"], "did not write"),
    ("synthesize-into-labels-folder", "synthesize --labels D --out D", [*SIMULATOR, "{w}/d1", "--out", "{w}/d1"], "is an input"),
    ("synthesize-over-earlier", "synthesize onto an earlier run's image", [*SIMULATOR, "{w}/map.nii.gz", "--out", "{w}/earlier"], "exists"),
    ("simulate-over-file", "simulate --out an existing image", ["simulate", "{w}/map.nii.gz", "--out", "{w}/empty.nii.gz"], "exists"),
    ("phantom-over-file", "phantom --out an existing label file", ["phantom", "--out", "{w}/map.seg.nrrd"], "exists"),
    ("augment-into-input-folder", "augment D --out D", ["augment", "{w}/d1", "--out", "{w}/d1"], "is an input"),
    ("simulate-spacing-tiny", "a map with 1e-30 mm voxels", ["simulate", "{w}/tiny_spacing.nrrd", "--out", "{w}/o.nii.gz"], "outside 0.0001..100000 mm"),
    ("simulate-spacing-huge", "a map with 1e30 mm voxels", ["simulate", "{w}/huge_spacing.nrrd", "--out", "{w}/o.nii.gz"], "outside 0.0001..100000 mm"),
    ("synthesize-spacing-tiny", "synthesize a map with 1e-30 mm voxels", [*SIMULATOR, "{w}/tiny_spacing.nrrd", "--out", "{w}/out"], "outside 0.0001..100000 mm"),
    ("train-config-list", "--config holds a JSON list", [*TRAIN, "--config", "{w}/list.json", "--out", "{w}/run_new"], "JSON object"),
    ("prepare-fractions-nan", "--fractions nan,0.5,0.5", ["prepare", "folder", "{w}/d1", "--out", "{w}/cc", "--fractions", "nan,0.5,0.5"], "finite"),
    ("phantom-dataset-unwritable", "--out where nothing can be written: the message names it", ["phantom-dataset", "--n", "1", "--out", "/proc/echosynth_pd"], ": /proc/echosynth_pd"),
    ("train-cache-object-array", "a cache file holds an object array", ["train", "sdm", "--data", "{w}/cache_object", *TINY_SET, "--out", "{w}/run_new"], "cache file missing or damaged"),
    ("train-cache-nan", "a cache image holds NaN", ["train", "sdm", "--data", "{w}/cache_nan", *TINY_SET, "--out", "{w}/run_new"], "NaN or infinite"),
    ("train-cache-truncated", "a cache file is cut short", ["train", "sdm", "--data", "{w}/cache_cut", *TINY_SET, "--out", "{w}/run_new"], "cache file missing or damaged"),
    ("evaluate-real-truncated", "the real cache has a file cut short", ["evaluate", "--real", "{w}/cache_cut", "--synthetic", "{w}/synthetic", "--out", "{w}/report"], "cache file missing or damaged"),
    ("prepare-truncated-npz", "a CAMUS-224 archive cut short", ["prepare", "camus224", "{w}/camus_cut", "--out", "{w}/cc"], "cannot be read as a .npz"),
    ("translate-simulator", "translate --model simulator (it cannot keep the image's content)", ["translate", "--model", "simulator", "--images", "{w}/synthetic/x_image.nii.gz", "--segment", "--out", "{w}/out"], "cannot keep an image's content"),
    ("translate-label-map-as-image", "a label map given as the echo image", ["translate", "--model", "{w}/adversarial", "--images", "{w}/map.nii.gz", "--labels", "{w}/map.nii.gz", "--out", "{w}/out"], "a label map, not an echo image"),
    ("synthesize-slice-of-2d", "--slice with a 2D map (a 2D model)", ["synthesize", "--model", "{w}/adversarial", "--labels", "{w}/map.nii.gz", "--out", "{w}/out", "--slice", "3"], "asked of a 2D map"),
    ("synthesize-volume-of-2d", "--plane volume with a 2D map (a 2D model)", ["synthesize", "--model", "{w}/adversarial", "--labels", "{w}/map.nii.gz", "--out", "{w}/out", "--plane", "volume"], "this map is 2D"),
    ("train-shape-model-3d", "train shape-model on a 3D cache", ["train", "shape-model", "--data", "{cache3d}", "--out", "{w}/run_new"], "this cache is 3D"),
    ("train-shape-model-no-train", "train shape-model on a cache whose train split is empty", ["train", "shape-model", "--data", "{w}/cache_val_only", "--out", "{w}/run_new"], "train split is empty"),
    ("evaluate-inception-empty", "--inception-weights is an empty .safetensors file", [*EVALUATE, "--inception-weights", "{w}/empty.safetensors", "--out", "{w}/report"], "not a safetensors file"),
    ("evaluate-inception-renamed-pickle", "--inception-weights is a pickle renamed .safetensors", [*EVALUATE, "--inception-weights", "{w}/pickle.safetensors", "--out", "{w}/report"], "not a safetensors file"),
    ("augment-n-huge", "augment --n 100000000000 (refused at once, before planning a name per output)", ["augment", "{w}/map.nii.gz", "--out", "{w}/out", "--n", "100000000000"], "needs about"),
    ("translate-into-images-folder", "translate --images D --out D", [ "translate", "--model", "{w}/adversarial", "--images", "{w}/synthetic", "--segment", "--out", "{w}/synthetic", ], "is an input"),
]  # fmt: skip
# (id, what is wrong, command, words the one-line message must contain)
CLI_CASES = [
    ("simulate-missing", "input file does not exist", ["simulate", "{w}/missing.nii.gz", "--out", "{w}/o.nii.gz"], "no such file"),
    ("simulate-onto-input", "output path is the input", ["simulate", "{w}/map.nii.gz", "--out", "{w}/map.nii.gz"], "is an input"),
    ("simulate-onto-input-alias", "output names the input by another path", ["simulate", "{w}/map.nii.gz", "--out", "{w}/d1/../map.nii.gz"], "is an input"),
    ("simulate-unknown-labels", "label values outside the schema", ["simulate", "{w}/bad_values.nii.gz", "--out", "{w}/o.nii.gz"], "[7]"),
    ("simulate-empty-map", "map with no heart structure", ["simulate", "{w}/empty.nii.gz", "--out", "{w}/o.nii.gz"], "empty"),
    ("simulate-nan-nifti", "NaN voxels in a NIfTI map", ["simulate", "{w}/nan.nii.gz", "--out", "{w}/o.nii.gz"], "NaN or infinite"),
    ("simulate-inf-nrrd", "infinite voxels in an NRRD map", ["simulate", "{w}/inf.nrrd", "--out", "{w}/o.nii.gz"], "NaN or infinite"),
    ("simulate-truncated-niigz", "truncated .nii.gz", ["simulate", "{w}/truncated.nii.gz", "--out", "{w}/o.nii.gz"], "truncated"),
    ("simulate-truncated-nii", "truncated .nii", ["simulate", "{w}/truncated.nii", "--out", "{w}/o.nii.gz"], "truncated"),
    ("simulate-truncated-mha", "truncated .mha", ["simulate", "{w}/truncated.mha", "--out", "{w}/o.nii.gz"], "truncated"),
    ("simulate-truncated-nrrd", "truncated .nrrd", ["simulate", "{w}/truncated.nrrd", "--out", "{w}/o.nii.gz"], "cannot be read"),
    ("simulate-4d", "a 4D image as a map", ["simulate", "{w}/four_d.nrrd", "--out", "{w}/o.nii.gz"], "4 dimensions"),
    ("simulate-corrupt-header", "corrupt NRRD header", ["simulate", "{w}/corrupt.nrrd", "--out", "{w}/o.nii.gz"], "cannot be read"),
    ("simulate-not-an-image", "a text file named .nii.gz", ["simulate", "{w}/text.nii.gz", "--out", "{w}/o.nii.gz"], "cannot be read"),
    ("simulate-tiny-map", "a 1x1 map", ["simulate", "{w}/tiny.nii.gz", "--out", "{w}/o.nii.gz"], "at least 8 voxels"),
    ("simulate-seed-negative", "--seed -1", ["simulate", "{w}/map.nii.gz", "--out", "{w}/o.nii.gz", "--seed", "-1"], "seed must be"),
    ("simulate-seed-too-large", "--seed 2**70", ["simulate", "{w}/map.nii.gz", "--out", "{w}/o.nii.gz", "--seed", str(2**70)], "seed must be"),
    ("simulate-seed-range-overflow", "seed + n past 2**32 - 1", ["simulate", "{w}/map.nii.gz", "--out", "{w}/o.nii.gz", "--seed", str(2**32 - 1), "--n", "2"], "largest seed"),
    ("simulate-seed-text", "--seed abc", ["simulate", "{w}/map.nii.gz", "--out", "{w}/o.nii.gz", "--seed", "abc"], "must be an integer"),
    ("simulate-gain-inf", "--gain inf", ["simulate", "{w}/map.nii.gz", "--out", "{w}/o.nii.gz", "--gain", "inf"], "finite"),
    ("simulate-range-zero", "--dynamic-range 0", ["simulate", "{w}/map.nii.gz", "--out", "{w}/o.nii.gz", "--dynamic-range", "0"], "greater than 0"),
    ("simulate-n-zero", "--n 0", ["simulate", "{w}/map.nii.gz", "--out", "{w}/o.nii.gz", "--n", "0"], "at least 1"),
    ("simulate-output-type", "output with an unknown extension", ["simulate", "{w}/map.nii.gz", "--out", "{w}/o.txt"], "unsupported file type"),
    ("simulate-unknown-schema", "--schema xyz", ["simulate", "{w}/map.nii.gz", "--out", "{w}/o.nii.gz", "--schema", "xyz"], "unknown label"),
    ("phantom-size-zero", "--size 0", ["phantom", "--size", "0", "--out", "{w}/p.nii.gz"], "at least 8"),
    ("phantom-too-large", "--view 3D --size 2000 (memory)", ["phantom", "--view", "3D", "--size", "2000", "--out", "{w}/p.nii.gz"], "GiB of memory"),
    ("phantom-2d-too-large", "--size 20000 (memory)", ["phantom", "--size", "20000", "--out", "{w}/p.nii.gz"], "GiB of memory"),
    ("phantom-seed-negative", "--seed -1", ["phantom", "--seed", "-1", "--out", "{w}/p.nii.gz"], "seed must be"),
    ("phantom-set-malformed", "--set without a value", ["phantom", "--set", "lv_length_mm", "--out", "{w}/p.nii.gz"], "NAME=NUMBER"),
    ("phantom-set-out-of-range", "--set wall_mm=-1", ["phantom", "--set", "wall_mm=-1", "--out", "{w}/p.nii.gz"], "wall_mm"),
    ("phantom-depth-nan", "--depth nan", ["phantom", "--depth", "nan", "--out", "{w}/p.nii.gz"], "finite"),
    ("phantom-unwritable-output", "an output folder nobody may write to", ["phantom", "--out", "/sys/echosynth-p.nii.gz"], "Permission denied: /sys/echosynth-p.nii.gz"),
    ("synthesize-same-stem", "two inputs named x.nii.gz in two folders", ["synthesize", "--model", "simulator", "--labels", "{w}/d1/x.nii.gz", "{w}/d2/x.nii.gz", "--out", "{w}/out"], "would both write"),
    ("synthesize-seg-and-nrrd", "a.seg.nrrd and a.nrrd side by side", ["synthesize", "--model", "simulator", "--labels", "{w}/pair", "--out", "{w}/out"], "would both write"),
    ("synthesize-segmenter-model", "a segmenter package as the generator", ["synthesize", "--model", "{w}/segmenter", "--labels", "{w}/map.nii.gz", "--out", "{w}/out"], "cannot be used"),
    ("synthesize-foreign-model", "a folder that is no model package", ["synthesize", "--model", "{w}/foreign", "--labels", "{w}/map.nii.gz", "--out", "{w}/out"], "not an EchoSynth model package"),
    ("synthesize-unknown-model", "a model name that is not installed", ["synthesize", "--model", "no-such-model", "--labels", "{w}/map.nii.gz", "--out", "{w}/out"], "no model named"),
    ("synthesize-guidance-nan", "--guidance nan", ["synthesize", "--model", "simulator", "--labels", "{w}/map.nii.gz", "--out", "{w}/out", "--guidance", "nan"], "finite"),
    ("synthesize-guidance-untrained", "--guidance 2 with an SDM trained without label dropout", ["synthesize", "--model", "{w}/run_pickle/model", "--labels", "{w}/map.nii.gz", "--out", "{w}/out", "--guidance", "2"], "label_dropout > 0"),
    ("synthesize-strength-zero", "--strength 0 with an SDM (nothing would be sampled)", ["synthesize", "--model", "{w}/run_pickle/model", "--labels", "{w}/map.nii.gz", "--out", "{w}/out", "--strength", "0"], "strength must be at least 0.01"),
    ("synthesize-seed-negative", "--seed -1 with the simulator", ["synthesize", "--model", "simulator", "--labels", "{w}/map.nii.gz", "--out", "{w}/out", "--seed", "-1"], "seed must be"),
    ("synthesize-seed-huge-model", "--seed 2**70 with a model", ["synthesize", "--model", "{w}/linked", "--labels", "{w}/map.nii.gz", "--out", "{w}/out", "--seed", str(2**70)], "seed must be"),
    ("synthesize-shard-out-of-range", "--shard 3/3", ["synthesize", "--model", "simulator", "--labels", "{w}/map.nii.gz", "--out", "{w}/out", "--shard", "3/3"], "0 <= K < N"),
    ("synthesize-out-is-file", "--out names a file", ["synthesize", "--model", "simulator", "--labels", "{w}/map.nii.gz", "--out", "{w}/a_file"], "not a folder"),
    ("synthesize-missing-folder", "--labels names a missing folder", ["synthesize", "--model", "simulator", "--labels", "{w}/nowhere", "--out", "{w}/out"], "no such file or folder"),
    ("augment-n-zero", "--n 0", ["augment", "{w}/map.nii.gz", "--out", "{w}/out", "--n", "0"], "at least 1"),
    ("augment-same-stem", "two inputs named x.nii.gz", ["augment", "{w}/d1/x.nii.gz", "{w}/d2/x.nii.gz", "--out", "{w}/out"], "same file name"),
    ("prepare-inside-root", "--out inside the dataset folder", ["prepare", "camus224", "{w}/camus", "--out", "{w}/camus/cache"], "inside the input folder"),
    ("prepare-too-large", "--size 100000 (memory)", ["prepare", "camus224", "{w}/camus", "--out", "{w}/cache", "--size", "100000"], "GiB of memory"),
    ("prepare-missing-root", "the dataset folder does not exist", ["prepare", "camus224", "{w}/nowhere", "--out", "{w}/cache"], "nowhere"),
    ("train-batch-zero", "--set batch_size=0", [*TRAIN, "--out", "{w}/run", "--set", "batch_size=0"], "batch_size must be at least 1"),
    ("train-rate-nan", "--set learning_rate=NaN", [*TRAIN, "--out", "{w}/run", "--set", "learning_rate=NaN"], "learning_rate must be a finite"),
    ("train-checkpoint-zero", "--set checkpoint_every=0", [*TRAIN, "--out", "{w}/run", "--set", "checkpoint_every=0"], "checkpoint_every"),
    ("train-steps-negative", "--set max_steps=-1", [*TRAIN, "--out", "{w}/run", "--set", "max_steps=-1"], "max_steps"),
    ("train-channels-text", "--set channels=abc", [*TRAIN, "--out", "{w}/run", "--set", "channels=abc"], "channels must be"),
    ("train-timesteps-zero", "--set timesteps=0", [*TRAIN, "--out", "{w}/run", "--set", "timesteps=0"], "timesteps must be"),
    ("train-unknown-setting", "--set colour=red", [*TRAIN, "--out", "{w}/run", "--set", "colour=red"], "unknown setting(s) colour"),
    ("train-bad-device", "--device tpu", [*TRAIN, "--out", "{w}/run", "--device", "tpu"], "unknown device"),
    ("train-config-not-json", "a run whose config.json is not JSON", [*TRAIN, "--out", "{w}/run_json"], "cannot be read"),
    ("train-checkpoint-truncated", "a run whose checkpoint safetensors is truncated", [*TRAIN, "--out", "{w}/run_truncated", "--set=max_steps=2"], "checkpoint cannot be restored"),
    ("train-optimizer-pickle", "a run whose optimizer.pt is a pickle, not tensors", [*TRAIN, "--out", "{w}/run_pickle", "--set=max_steps=2"], "checkpoint cannot be restored"),
    ("models-add-link-outside", "a package with a link to a file outside it", ["models", "add", "{w}/linked"], "outside the package"),
    ("models-add-link-loop", "a package with a link to its own folder", ["models", "add", "{w}/looped"], "link to a folder"),
    ("info-truncated", "info on a truncated .nii.gz", ["info", "{w}/truncated.nii.gz"], "truncated"),
    ("evaluate-real-not-a-cache", "--real names a folder that is no cache", ["evaluate", "--real", "{w}/d1", "--synthetic", "{w}/synthetic", "--out", "{w}/report"], "no EchoSynth cache here"),
    ("evaluate-unknown-split", "--real CACHE:valid (no such split)", ["evaluate", "--real", "{cache}:valid", "--synthetic", "{w}/synthetic", "--out", "{w}/report"], "unknown split 'valid'"),
    ("evaluate-no-images", "--synthetic folder without images", ["evaluate", "--real", "{cache}", "--synthetic", "{w}/no_images", "--out", "{w}/report"], "no image files"),
    ("evaluate-report-inside-set", "--out inside the synthetic folder", ["evaluate", "--real", "{cache}", "--synthetic", "{w}/synthetic", "--out", "{w}/synthetic/report"], "inside the input folder"),
    ("evaluate-encoder-wrong-kind", "--encoder is a segmenter package", ["evaluate", "--real", "{cache}", "--synthetic", "{w}/synthetic", "--encoder", "{w}/segmenter", "--out", "{w}/report"], "echoencoder2d"),
    ("evaluate-inception-pickle", "--inception-weights is not safetensors", ["evaluate", "--real", "{cache}", "--synthetic", "{w}/synthetic", "--encoder", "{w}/segmenter", "--inception-weights", "{w}/run_pickle/checkpoint/optimizer.pt", "--out", "{w}/report"], "must be a safetensors file"),
    ("generate-simulator", "generate with the simulator (no paired model)", ["generate", "--model", "simulator", "--out", "{w}/cases"], "needs a paired-generation model"),
    ("generate-wrong-kind", "generate with a segmenter package", ["generate", "--model", "{w}/segmenter", "--out", "{w}/cases"], "cannot be used for nothing -> (image, label map)"),
    ("generate-missing-model", "generate with a folder that does not exist", ["generate", "--model", "{w}/no-such-model", "--out", "{w}/cases"], "no-such-model"),
    ("generate-out-is-a-file", "--out is an existing file", ["generate", "--model", "{w}/paired", "--out", "{w}/a_file"], "exists and is not a folder"),
    ("generate-onto-existing-case", "--out already holds case_0000", ["generate", "--model", "{w}/paired", "--out", "{w}/old_cases"], "case_0000_image.nrrd: exists"),
    ("generate-wrong-sampler", "--sampler ddpm for a latent model", ["generate", "--model", "{w}/paired", "--out", "{w}/cases", "--sampler", "ddpm"], "cannot sample with 'ddpm'"),
    ("train-latent-no-autoencoder", "train latent without --set autoencoder", ["train", "latent", "--data", "{cache}", "--out", "{w}/latent_run"], "--set autoencoder="),
    ("train-latent-wrong-autoencoder", "--set autoencoder= names a segmenter package", ["train", "latent", "--data", "{cache}", "--out", "{w}/latent_run", "--set", "autoencoder={w}/segmenter"], "expected 'autoencoder'"),
    ("train-adversarial-wrong-size", "--set image_size=64 on a 32x32 cache", ["train", "adversarial", "--data", "{cache}", "--out", "{w}/adv_run", "--set", "image_size=64"], "this model needs 64x64"),
    ("train-init-wrong-kind", "--set init= names a segmenter package for an SDM run", ["train", "sdm", "--data", "{cache}", "--out", "{w}/sdm_run", "--set", "init={w}/segmenter"], "this run trains 'sdm2d'"),
    ("train-init-missing", "--set init= names a folder that does not exist", ["train", "sdm", "--data", "{cache}", "--out", "{w}/sdm_run", "--set", "init={w}/no_such_model"], "no_such_model"),
    ("translate-no-anatomy", "translate without --labels or --segment", ["translate", "--model", "{w}/adversarial", "--images", "{w}/synthetic/x_image.nii.gz", "--out", "{w}/out"], "--segment"),
    ("translate-empty-map", "translate with an empty label map", ["translate", "--model", "{w}/adversarial", "--images", "{w}/synthetic/x_image.nii.gz", "--labels", "{w}/empty_map.nii.gz", "--out", "{w}/out"], "the label map is empty"),
    ("translate-other-grid", "a label map on another grid than its image", ["translate", "--model", "{w}/adversarial", "--images", "{w}/synthetic/x_image.nii.gz", "--labels", "{w}/empty.nii.gz", "--out", "{w}/out"], "grid differs from the image"),
    ("translate-label-count", "two label files for one image", ["translate", "--model", "{w}/adversarial", "--images", "{w}/synthetic/x_image.nii.gz", "--labels", "{w}/map.nii.gz", "{w}/empty_map.nii.gz", "--out", "{w}/out"], "one label file per image"),
    ("translate-3d-volume", "a 3D volume to a 2D model", ["translate", "--model", "{w}/adversarial", "--images", "{w}/volume3d.nii.gz", "--segment", "--out", "{w}/out"], "translation takes 2D images"),
    ("translate-wrong-kind", "a segmenter package as the model", ["translate", "--model", "{w}/segmenter", "--images", "{w}/synthetic/x_image.nii.gz", "--segment", "--out", "{w}/out"], "cannot be used"),
]  # fmt: skip


def _api_cases():
    from EchoSynthLib.anatomy import phantom_label_map
    from EchoSynthLib.jobs.spec import JobSpec
    from EchoSynthLib.models.sdm.pipeline import Synthesizer
    from EchoSynthLib.simulation import SimulatorSettings, simulate_bmode

    nan_map = np.zeros((32, 32), np.float32)
    nan_map[1, 1] = np.nan
    return [
        ("api-simulate-nan-array", "simulate_bmode on a float array with NaN", lambda: simulate_bmode(nan_map), "NaN"),
        ("api-simulate-1d-array", "simulate_bmode on a 1D array", lambda: simulate_bmode(np.zeros(5, np.uint8)), "2D or 3D"),
        ("api-simulate-seed-negative", "simulate_bmode seed -1", lambda: simulate_bmode(np.ones((32, 32), np.uint8), seed=-1), "seed must be"),
        ("api-simulate-seed-float", "simulate_bmode seed 1.5", lambda: simulate_bmode(np.ones((32, 32), np.uint8), seed=1.5), "seed must be"),
        ("api-volume-origin-nan", "Volume with a NaN origin", lambda: Volume(np.zeros((1, 4, 4)), origin=(np.nan, 0, 0)), "finite"),
        ("api-volume-direction-zero", "Volume with an all-zero direction", lambda: Volume(np.zeros((1, 4, 4)), direction=(0,) * 9), "invertible"),
        ("api-settings-gain-inf", "SimulatorSettings(gain_db=inf)", lambda: SimulatorSettings(gain_db=float("inf")), "finite"),
        ("api-phantom-seed-negative", "phantom_label_map seed -1", lambda: phantom_label_map("4CH", "ED", seed=-1), "seed must be"),
        ("api-synthesizer-latent-name", "Synthesizer.load of a latent model's name", lambda: Synthesizer.load("latent-camus128"), "expected 'sdm2d'"),
        ("api-volume-spacing-tiny", "Volume with 1e-30 mm voxels", lambda: Volume(np.zeros((1, 4, 4)), spacing=(1e-30, 1e-30, 1.0)), "outside 0.0001..100000 mm"),
        ("api-job-strength-5", "JobSpec(strength=5.0)", lambda: JobSpec(inputs=("a.nrrd",), strength=5.0), "strength"),
    ]  # fmt: skip


CLI_CASES += OUTPUT_CASES

API_IDS = [
    "api-simulate-nan-array",
    "api-simulate-1d-array",
    "api-simulate-seed-negative",
    "api-simulate-seed-float",
    "api-volume-origin-nan",
    "api-volume-direction-zero",
    "api-settings-gain-inf",
    "api-phantom-seed-negative",
    "api-synthesizer-latent-name",
    "api-volume-spacing-tiny",
    "api-job-strength-5",
]


def _snapshot(*folders: Path) -> dict[str, str]:
    """Every file and folder under ``folders`` (hidden ones too) with the SHA-256 of each file."""
    state = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or path.is_dir():
                state[str(path)] = "link" if path.is_symlink() else "folder"
            else:
                state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch, on the pickle case
@pytest.mark.parametrize(("case", "what", "args", "words"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_command_line_input(
    workspace, tiny_cache, tiny_cache_3d, tmp_path, monkeypatch, capsys, case, what, args, words
):
    monkeypatch.setenv("ECHOSYNTH_CACHE_DIR", str(tmp_path / "model-cache"))
    monkeypatch.chdir(tmp_path)  # where a pickle that ran would leave its marker
    before = _snapshot(workspace, tiny_cache)
    code = main([a.format(w=workspace, cache=tiny_cache, cache3d=tiny_cache_3d) for a in args])
    err = capsys.readouterr().err
    assert code == 2, f"{what}: exit {code}"
    assert len(err.strip().splitlines()) == 1, f"{what}: {err!r}"
    assert words in err, f"{what}: {err!r}"
    assert _snapshot(workspace, tiny_cache) == before, f"{what}: files were written or changed"
    assert not (tmp_path / MARKER).exists() and not (tmp_path / "model-cache").exists()


@pytest.mark.parametrize("index", range(len(API_IDS)), ids=API_IDS)
def test_bad_api_input(index):
    case, what, call, words = _api_cases()[index]
    assert case == API_IDS[index]
    with pytest.raises(InputError) as raised:
        call()
    assert words in str(raised.value) and len(str(raised.value).splitlines()) == 1, what


def test_the_reliability_table_lists_exactly_the_tested_cases():
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", RELIABILITY.read_text(), re.M)
    assert sorted(rows) == sorted([c[0] for c in CLI_CASES] + API_IDS)
