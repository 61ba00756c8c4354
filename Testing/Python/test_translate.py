"""``echosynth translate`` (issue 15): the anatomy from the user's labels and/or the segmenter (which only
fills what the labels lack), outputs on the source's exact grid with a report of where each structure came
from, and bad inputs refused with nothing written."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from EchoSynthLib.cli.main import main
from EchoSynthLib.data.io import read_image, read_label_map, write_image, write_label_map
from EchoSynthLib.data.labels import Structure
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError
from EchoSynthLib.sampling.translate import merge_labels
from EchoSynthLib.simulation import simulate_bmode

CAVITY, MYO, ATRIUM, SECTOR = (
    s.label for s in (Structure.LV_CAVITY, Structure.LV_MYOCARDIUM, Structure.LEFT_ATRIUM, Structure.SECTOR)
)


def test_merge_keeps_the_users_structures_and_fills_only_the_missing_ones():
    segmented = np.full((1, 20, 20), SECTOR, np.uint8)
    segmented[0, 2:10, 2:10] = MYO
    segmented[0, 4:8, 4:8] = CAVITY  # the segmenter's cavity, off the user's
    segmented[0, 12:16, 4:8] = ATRIUM
    given = np.zeros((1, 20, 20), np.uint8)
    given[0, 5:9, 5:9] = CAVITY  # EchoNet-style: the LV cavity alone
    grid = dict(spacing=(0.5, 0.5, 1.0), origin=(1.0, 2.0, 0.0))
    merged, sources = merge_labels(Volume(given, **grid), Volume(segmented, **grid))
    assert sources == {"lv_cavity": "labels", "lv_myocardium": "segmenter", "left_atrium": "segmenter"}
    assert np.array_equal(merged.array == CAVITY, given == CAVITY)  # exactly the user's outline
    lost = (segmented == CAVITY) & (given != CAVITY)
    assert (merged.array[lost] == SECTOR).all()  # the segmenter's cavity outside it is not kept
    keep = (given != CAVITY) & ~lost
    assert np.array_equal(merged.array[keep], segmented[keep])  # everything else from the segmenter
    assert merged.spacing == (0.5, 0.5, 1.0)
    only, sources = merge_labels(Volume(given, **grid), None)
    assert np.array_equal(only.array, given) and sources["lv_myocardium"] == "absent"
    with pytest.raises(InputError, match="--segment"):
        merge_labels(None, None)


@pytest.fixture
def scanner_image(phantom_2d, tmp_path):
    """A source image (the simulator's look stands in for another scanner) on an odd grid, and its map."""
    labels = phantom_2d.labels
    moved = Volume(labels.array, (0.7, 0.45, 1.0), (12.0, -3.0, 4.0), (0, 1, 0, -1, 0, 0, 0, 0, 1))
    write_image(simulate_bmode(moved, seed=1), tmp_path / "in" / "echo.nii.gz")
    write_label_map(moved, tmp_path / "labels" / "echo_gt.nii.gz")
    return moved


def test_translate_with_labels_keeps_the_source_grid_and_reports(
    tiny_adversarial, scanner_image, tmp_path, capsys
):
    model = str(tiny_adversarial.run / "model")
    args = [
        "translate",
        "--model",
        model,
        "--images",
        str(tmp_path / "in"),
        "--labels",
        str(tmp_path / "labels"),
    ]
    assert main([*args, "--out", str(tmp_path / "out"), "--seed", "3"]) == 0, capsys.readouterr().err
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "echo_translated.nii.gz",
        "echo_translated_labels.seg.nrrd",
        "translation.json",
    ]
    source = read_image(tmp_path / "in" / "echo.nii.gz")
    translated = read_image(out / "echo_translated.nii.gz")
    assert translated.same_geometry(source) and translated.array.dtype == np.uint8
    assert not np.array_equal(translated.array, source.array)
    report = json.loads((out / "translation.json").read_text())
    (entry,) = report["images"]
    assert entry["seed"] == 3 and set(entry["structures"].values()) == {"labels"}
    assert np.array_equal(read_label_map(out / "echo_translated_labels.seg.nrrd").array, scanner_image.array)


def test_segment_fills_what_echonet_style_labels_lack(tiny_adversarial, scanner_image, tmp_path, capsys):
    only_cavity = scanner_image.with_array(
        np.where(scanner_image.array == CAVITY, CAVITY, 0).astype(np.uint8)
    )
    write_label_map(only_cavity, tmp_path / "cavity" / "echo.nii.gz")
    args = ["translate", "--model", str(tiny_adversarial.run / "model"), "--images", str(tmp_path / "in")]
    args += ["--labels", str(tmp_path / "cavity"), "--segment", "--out", str(tmp_path / "out")]
    assert main(args) == 0, capsys.readouterr().err
    (entry,) = json.loads((tmp_path / "out" / "translation.json").read_text())["images"]
    assert entry["structures"]["lv_cavity"] == "labels"
    assert entry["structures"]["lv_myocardium"] == "segmenter"
    guide = read_label_map(tmp_path / "out" / "echo_translated_labels.seg.nrrd").array
    assert np.array_equal(guide == CAVITY, only_cavity.array == CAVITY)
    assert (guide == MYO).sum() > 0.5 * (scanner_image.array == MYO).sum()  # the segmenter's myocardium


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--labels"),  # neither labels nor --segment
        (["--labels", "{w}/empty.nii.gz"], "empty.nii.gz): the label map is empty"),
        (["--labels", "{w}/labels/echo_gt.nii.gz", "{w}/empty.nii.gz"], "one label file per image"),
        (["--segment", "--model-override", "segmenter-camus"], "cannot be used"),
        (["--segment", "--images-override", "{w}/volume.nii.gz"], "slice by slice (--slices)"),
    ],
    ids=["no-anatomy", "empty-map", "count-mismatch", "wrong-kind", "3d-volume"],
)
def test_bad_inputs_exit_2_and_write_nothing(
    tiny_adversarial, scanner_image, tmp_path, capsys, extra, message
):
    write_label_map(scanner_image.with_array(np.zeros_like(scanner_image.array)), tmp_path / "empty.nii.gz")
    write_image(Volume(np.zeros((3, 8, 8), np.uint8) + 9, (1.0, 1.0, 1.0)), tmp_path / "volume.nii.gz")
    model, images = str(tiny_adversarial.run / "model"), str(tmp_path / "in")
    extra = [e.replace("{w}", str(tmp_path)) for e in extra]
    if "--model-override" in extra:
        model = extra.pop(extra.index("--model-override") + 1)
        extra.remove("--model-override")
    if "--images-override" in extra:
        images = extra.pop(extra.index("--images-override") + 1)
        extra.remove("--images-override")
    args = ["translate", "--model", model, "--images", images, *extra, "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_echonet_traced_frames_translate_with_their_tracings(tiny_adversarial, tmp_path, capsys):
    from test_reader_echonet import filelist_row, rectangle, write_dataset

    root = write_dataset(
        tmp_path / "echonet",
        videos=["VidA", "VidB"],  # VidC is listed and traced, but its video is missing
        filelist=[filelist_row("VidA", "TRAIN"), filelist_row("VidB", "TEST"), filelist_row("VidC", "TRAIN")],
        tracings=[
            ("VidC", 2, rectangle(40.5, 60.5, 30.5, 70.5)),
            ("VidC", 7, rectangle(30.5, 70.5, 20.5, 80.5)),
            ("VidA", 2, rectangle(40.5, 60.5, 30.5, 70.5)),
            ("VidA", 7, rectangle(30.5, 70.5, 20.5, 80.5)),
            ("VidB", 1, rectangle(40.5, 60.5, 30.5, 70.5)),
            ("VidB", 5, rectangle(30.5, 70.5, 20.5, 80.5)),
        ],
    )
    model = str(tiny_adversarial.run / "model")
    args = [
        "translate",
        "--model",
        model,
        "--echonet",
        str(root),
        "--split",
        "train",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0, capsys.readouterr().err
    # said, not dropped without a word (issue 30)
    assert "warning: skipped 1: video file missing (listed in FileList.csv)" in capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "translation.json").read_text())
    assert [e["image"] for e in report["images"]] == [
        "VidA_ED_translated.nii.gz",
        "VidA_ES_translated.nii.gz",
    ]
    assert all(e["structures"]["lv_cavity"] == "labels" for e in report["images"])
    ed = read_image(tmp_path / "out" / "VidA_ED_translated.nii.gz")
    assert ed.array.shape == (1, 112, 112)
    guide = read_label_map(tmp_path / "out" / "VidA_ED_translated_labels.seg.nrrd").array
    assert (guide == CAVITY).sum() == 40 * 60  # the ED (larger) tracing's pixels, as traced
    assert main([*args[:-2], "--labels", str(root), "--out", str(tmp_path / "x")]) == 2
    assert "--labels goes with --images" in capsys.readouterr().err


def test_evaluate_reads_translations_with_their_guides_and_pairs_them_with_their_sources(
    tiny_adversarial, phantom_2d, tiny_cache, tmp_path, capsys
):
    """``evaluate --synthetic OUT --paired-with SOURCES``: each x_translated image is labelled by its
    x_translated_labels map and compared with the source x, whatever the files' order."""
    from EchoSynthLib.cache.store import CacheIndex
    from EchoSynthLib.evaluation.image_sets import open_set, paired_in_order

    for name, seed in (("b", 1), ("a", 2), ("c", 3)):
        write_image(simulate_bmode(phantom_2d.labels, seed=seed), tmp_path / "in" / f"{name}.nii.gz")
        write_label_map(phantom_2d.labels, tmp_path / "labels" / f"{name}.nii.gz")
    model = str(tiny_adversarial.run / "model")
    args = [
        "translate",
        "--model",
        model,
        "--images",
        str(tmp_path / "in"),
        "--labels",
        str(tmp_path / "labels"),
    ]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    cache = CacheIndex.open(tiny_cache)
    translated = open_set(tmp_path / "out", cache)
    assert translated.labels is not None and sorted(translated.names) == [
        "a_translated",
        "b_translated",
        "c_translated",
    ]
    sources = open_set(tmp_path / "in", cache)
    sources.names.reverse()  # another order: pairing goes by name
    sources.images = sources.images[::-1]
    paired = paired_in_order(translated, sources)
    for name, image in zip(translated.names, paired, strict=True):
        np.testing.assert_array_equal(
            image, sources.images[sources.names.index(name.removesuffix("_translated"))]
        )
    sources.names[0] = "other"
    with pytest.raises(InputError, match="no source image named"):
        paired_in_order(translated, sources)


def one_video(root):
    """An EchoNet-Dynamic folder with one video, VidA, its LV traced at frames 2 and 7."""
    from test_reader_echonet import filelist_row, rectangle, write_dataset

    tracings = [
        ("VidA", 2, rectangle(40.5, 60.5, 30.5, 70.5)),
        ("VidA", 7, rectangle(30.5, 70.5, 20.5, 80.5)),
    ]
    return write_dataset(root, videos=["VidA"], filelist=[filelist_row("VidA", "TRAIN")], tracings=tracings)


def test_every_frame_of_a_video_shares_one_seed_so_frames_flicker_less(tiny_adversarial, tmp_path, capsys):
    from test_reader_echonet import N_FRAMES

    from EchoSynthLib.inference.generators import GeneratorSettings, open_generator
    from EchoSynthLib.models.segmenter.network import Segmenter
    from EchoSynthLib.sampling.translate import echonet_sources, translate_files

    root = one_video(tmp_path / "echonet")
    model = str(tiny_adversarial.run / "model")
    args = ["translate", "--model", model, "--echonet", str(root), "--every-frame"]
    assert main([*args, "--out", str(tmp_path / "x")]) == 2
    assert "--every-frame needs --segment" in capsys.readouterr().err
    assert main([*args, "--segment", "--seed", "4", "--out", str(tmp_path / "out")]) == 0, (
        capsys.readouterr().err
    )
    report = json.loads((tmp_path / "out" / "translation.json").read_text())
    frames = report["images"]
    assert [e["image"] for e in frames] == [f"VidA_f{i:04d}_translated.nii.gz" for i in range(N_FRAMES)]
    assert {e["seed"] for e in frames} == {4}  # one seed per video
    assert (
        frames[2]["structures"]["lv_cavity"] == "labels" and frames[7]["structures"]["lv_cavity"] == "labels"
    )
    assert frames[0]["structures"]["lv_cavity"] == "segmenter"
    together = report["frame_to_frame_change"]["VidA"]
    assert together["frame_pairs"] == N_FRAMES - 1 and together["source"] > 0
    # The same frames, each with its own seed, change more from frame to frame.
    generator = open_generator(GeneratorSettings(model, device="cpu"))
    segment = Segmenter.load("segmenter-camus", "cpu").segment
    sources = [
        s.__class__(s.stem, s.suffix, s.origin, s.load, "") for s in echonet_sources(root, every_frame=True)
    ]
    translate_files(generator, sources, tmp_path / "apart", segment=segment, seed=4)
    apart = [read_image(tmp_path / "apart" / e["image"]).array.astype(float) for e in frames]
    change = np.mean([np.abs(b - a).mean() for a, b in itertools.pairwise(apart)])
    assert together["translated"] < change


def test_a_3d_volume_translates_slice_by_slice_with_its_geometry(tiny_adversarial, tmp_path, capsys):
    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map

    labels = phantom_label_map("3D", "ED", seed=2, grid=PhantomGrid.for_view("3D", size=24)).labels
    labels = Volume(labels.array, (0.8, 0.7, 1.5), (3.0, 1.0, -2.0), labels.direction)
    write_image(simulate_bmode(labels, seed=1), tmp_path / "in" / "volume.nrrd")
    write_label_map(labels, tmp_path / "labels" / "volume.nrrd")
    model = str(tiny_adversarial.run / "model")
    args = [
        "translate",
        "--model",
        model,
        "--images",
        str(tmp_path / "in"),
        "--labels",
        str(tmp_path / "labels"),
    ]
    assert main([*args, "--out", str(tmp_path / "x")]) == 2
    assert "--slices" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main([*args, "--slices", "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    translated = read_image(tmp_path / "out" / "volume_translated.nrrd")
    assert translated.same_geometry(labels) and translated.array.dtype == np.uint8
    heart = np.isin(labels.array, [CAVITY, MYO, ATRIUM]).reshape(labels.array.shape[0], -1).any(1)
    assert not heart.all() and heart.any()
    for k, has_heart in enumerate(heart):
        assert translated.array[k].any() == has_heart, k  # slices without a heart structure stay black
    guide = read_label_map(tmp_path / "out" / "volume_translated_labels.seg.nrrd")
    assert guide.same_geometry(labels)


def test_a_videos_look_is_held_steady_while_its_anatomy_moves():
    """``steady_look`` (issue 33 section 5): a translation that flickers (the model's difference from the
    source jumps from frame to frame) comes out changing no more than its source from frame to frame; a
    steady look (the same difference every frame) passes unchanged, and so does the source's own motion."""
    from EchoSynthLib.sampling.translate import steady_look

    rng = np.random.default_rng(0)
    frames = 12
    moving = [np.zeros((24, 24)) for _ in range(frames)]
    for k, frame in enumerate(moving):
        frame[:, :] = 60.0
        frame[8:16, k : k + 6] = 180.0  # a bright wall moving one column per frame
    look = 25.0  # the model makes everything brighter ...
    flickering = [m + look + rng.normal(0.0, 8.0, m.shape) for m in moving]  # ... with a jumpy texture
    held = steady_look(moving, flickering, 2.0)

    def change(video):
        return np.mean([np.abs(b.astype(float) - a).mean() for a, b in itertools.pairwise(video)])

    assert change(flickering) > 2 * change(moving)
    assert change(held) < 0.5 * change(flickering) and change(held) <= 1.5 * change(moving)
    assert abs(np.mean([h.mean() - m.mean() for h, m in zip(held, moving, strict=True)]) - look) < 1.0
    one_look = steady_look(moving, flickering)  # the default: the video's mean difference, one look
    assert change(one_look) <= change(moving) + 0.1  # as the source (but for rounding)
    assert change(held) > change(one_look)
    for frames in (2.0, math.inf):
        steady = steady_look(moving, [m + look for m in moving], frames)
        for frame, source in zip(steady, moving, strict=True):
            np.testing.assert_array_equal(frame, np.clip(source + look, 0, 255).astype(np.uint8))


def test_the_cli_holds_every_frame_steady_unless_told_not_to(tiny_adversarial, tmp_path, capsys):
    from EchoSynthLib.cli import translate_commands
    from EchoSynthLib.sampling import translate

    assert translate_commands.STEADY_FRAMES == translate.STEADY_FRAMES  # one default, written twice
    root = one_video(tmp_path / "echonet")
    args = ["translate", "--model", str(tiny_adversarial.run / "model"), "--echonet", str(root)]
    args += ["--every-frame", "--segment", "--seed", "4", "--out"]
    changes = {}
    for steady in ("0", "2", "inf"):
        assert main([*args, str(tmp_path / steady), "--steady", steady]) == 0, capsys.readouterr().err
        report = json.loads((tmp_path / steady / "translation.json").read_text())
        assert report["steady_frames"] == ("video" if steady == "inf" else float(steady))
        changes[steady] = report["frame_to_frame_change"]["VidA"]
    assert changes["inf"]["translated"] < changes["2"]["translated"] < changes["0"]["translated"]
    assert changes["inf"]["translated"] <= changes["inf"]["source"] + 0.5  # one look: as the source moves
    assert main([*args, str(tmp_path / "default")]) == 0
    default = json.loads((tmp_path / "default" / "translation.json").read_text())
    assert default["steady_frames"] == "video"
    for bad in ("-1", "nan", "many"):
        assert main([*args, str(tmp_path / "bad"), "--steady", bad]) == 2
        assert "--steady takes a number of frames" in capsys.readouterr().err
