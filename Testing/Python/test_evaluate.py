"""``echosynth evaluate`` end to end on phantoms: the report, its figures, memorisation, refusals."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pytest

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.cache.store import CacheIndex, build_cache
from EchoSynthLib.cli.main import main
from EchoSynthLib.data.io import write_image, write_label_map
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.datasets import scan_dataset
from EchoSynthLib.engine.settings import RunSettings
from EchoSynthLib.models.features.config import EncoderConfig
from EchoSynthLib.models.features.trainer import EncoderTrainer
from EchoSynthLib.preprocessing.prepare import PrepareSettings
from EchoSynthLib.simulation import simulate_bmode

GRID = PhantomGrid.for_view("4CH", size=64)


def _phantoms(folder, seeds, image_name="{}.nii.gz", label_name="{}_label.nii.gz"):
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        for phase in ("ED", "ES"):
            phantom = phantom_label_map("4CH", phase, seed=seed, grid=GRID)
            name = f"pt{seed}_{phase}"
            write_image(simulate_bmode(phantom.labels, seed=seed), folder / image_name.format(name))
            write_label_map(phantom.labels, folder / label_name.format(name))
    return folder


@pytest.fixture(scope="module")
def eval_cache(tmp_path_factory):
    """Twelve phantom patients (ED + ES) at 32x32: half train, half val."""
    root = _phantoms(tmp_path_factory.mktemp("eval-phantoms"), range(12))
    cache = tmp_path_factory.mktemp("eval-caches") / "cache"
    settings = PrepareSettings(size=(32, 32), split_fractions={"train": 0.5, "val": 0.5, "test": 0.0})
    build_cache(scan_dataset("folder", root), cache, settings)
    return cache


@pytest.fixture(scope="module")
def encoder(eval_cache, tmp_path_factory):
    config = EncoderConfig(
        channels=(8, 16, 16, 32), blocks=(1, 1, 1, 1), projection=16, crop=16, batch_size=8
    )
    run = tmp_path_factory.mktemp("encoder")
    settings = RunSettings(max_steps=30, workers=0, log_every=30, val_every=30, checkpoint_every=30)
    EncoderTrainer(eval_cache, run, config, "cpu", settings).fit()
    return run / "model"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A synthetic set as the demo writes one: NAME_image + NAME_labels, new anatomies."""
    return _phantoms(tmp_path_factory.mktemp("sim"), range(100, 106), "{}_image.nii.gz", "{}_labels.nii.gz")


@pytest.fixture(scope="module")
def blurred(tmp_path_factory):
    """A baseline the synthetic set should beat: the same phantoms' simulated images, blurred (sigma 4 px)."""
    import dataclasses

    from scipy.ndimage import gaussian_filter

    folder = tmp_path_factory.mktemp("blurred")
    for seed in range(100, 106):
        for phase in ("ED", "ES"):
            phantom = phantom_label_map("4CH", phase, seed=seed, grid=GRID)
            image = simulate_bmode(phantom.labels, seed=seed)
            soft = gaussian_filter(image.array.astype(np.float32), (0, 4, 4))
            blurred_image = dataclasses.replace(image, array=np.rint(soft).astype(np.uint8))
            write_image(blurred_image, folder / f"pt{seed}_{phase}_image.nii.gz")
            write_label_map(phantom.labels, folder / f"pt{seed}_{phase}_labels.nii.gz")
    return folder


def evaluate_with_baseline(eval_cache, encoder, simulated, blurred, out) -> dict:
    """``evaluate`` of ``simulated`` with ``blurred`` as the baseline, into ``out``; the report."""
    command = ["evaluate", "--real", f"{eval_cache}:val", "--synthetic", str(simulated)]
    command += ["--baseline", str(blurred), "--encoder", str(encoder), "--out", str(out)]
    assert main(command) == 0
    return json.loads((out / "report.json").read_text())


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))


def test_evaluate_writes_a_report_with_every_section_and_figure(eval_cache, encoder, simulated, tmp_path):
    out = tmp_path / "report"
    args = [
        "evaluate",
        "--real",
        f"{eval_cache}:val",
        "--synthetic",
        str(simulated),
        "--encoder",
        str(encoder),
    ]
    assert main([*args, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    echo = report["feature_spaces"]["echo"]
    for comparison in ("synthetic_vs_real", "reference_real_vs_train"):
        values = echo[comparison]["2d"]
        assert values["frechet_distance"] >= 0 and np.isfinite(values["kid"]["mean"])
        assert 0 <= values["precision"] <= 1 and 0 <= values["coverage"] <= 1
    assert report["feature_spaces"]["segmenter"].startswith("not computed")
    assert report["feature_spaces"]["inception"].startswith("not computed")
    assert report["sets"]["synthetic"] == {"description": str(simulated), "images": 12, "labelled": True}
    assert set(report["structures"]["synthetic"]) == {"lv_cavity", "lv_myocardium", "left_atrium"}
    assert 0 < report["diversity_ms_ssim"]["synthetic"]["ms_ssim"] < 1
    assert report["memorisation"]["share_above"] <= 0.34  # new anatomies: about 2 x 5 % expected
    parser = _Images()
    parser.feed((out / "report.html").read_text())
    assert [i["alt"] for i in parser.images] == report["figures"]
    assert all(i["src"].startswith("data:image/png;base64,") for i in parser.images)
    assert all((out / name).is_file() for name in report["figures"])
    assert {"samples.png", "histograms.png", "embedding.png", "memorisation.png"} <= set(report["figures"])


def test_planted_copies_of_training_images_are_flagged_and_filtered(eval_cache, encoder, simulated, tmp_path):
    """Copies of training images, also mirrored or shifted by 2 px, are above the threshold; new anatomies
    are not; --filter keeps only what is below it."""
    cache = CacheIndex.open(eval_cache)
    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in simulated.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    layout = cache.manifest.layout
    for k, entry in enumerate(cache.cases("train")[:3]):
        image, labels = cache.load(entry)
        grey = np.rint((image + 1.0) * 127.5).astype(np.uint8)
        canonical = layout.to_canonical(labels)
        variants = {"copy": (grey, canonical), "mirror": (grey[:, ::-1], canonical[:, ::-1]),
                    "shift": (np.roll(grey, 2, axis=1), np.roll(canonical, 2, axis=1))}  # fmt: skip
        for kind, (g, lab) in variants.items():
            name = f"planted{k}{kind}"
            write_image(Volume(np.ascontiguousarray(g)[None]), folder / f"{name}_image.nii.gz")
            write_label_map(Volume(np.ascontiguousarray(lab)[None]), folder / f"{name}_labels.nii.gz")
    out, kept = tmp_path / "report", tmp_path / "kept"
    args = ["evaluate", "--real", f"{eval_cache}:val", "--synthetic", str(folder), "--encoder", str(encoder)]
    assert main([*args, "--out", str(out), "--filter", str(kept)]) == 0
    flagged = set(json.loads((out / "report.json").read_text())["memorisation"]["flagged"])
    planted = {f"planted{k}{kind}_image" for k in range(3) for kind in ("copy", "mirror", "shift")}
    assert planted <= flagged
    assert len(flagged - planted) <= 4  # new anatomies: about 2 x 5 % expected, 12 held-out images set it
    kept_names = {p.name for p in kept.iterdir()}
    assert not any(name.startswith("planted") for name in kept_names)
    assert len([n for n in kept_names if n.endswith("_image.nii.gz")]) == 12 - len(flagged - planted)


def test_bad_evaluation_input_is_named_and_writes_nothing(eval_cache, encoder, simulated, tmp_path, capsys):
    base = [
        "evaluate",
        "--real",
        f"{eval_cache}:val",
        "--encoder",
        str(encoder),
        "--out",
        str(tmp_path / "r"),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--synthetic", str(empty)], "no image files"),
        (["--synthetic", str(tmp_path / "missing")], "no such folder"),
        (["--synthetic", str(simulated), "--out", str(simulated / "report")], "inside the input folder"),
    ]
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for path in simulated.glob("*_image.nii.gz"):
        (unlabelled / path.name).write_bytes(path.read_bytes())
    cases.append((["--synthetic", str(unlabelled), "--segmenter", str(encoder)], "needs a label map"))
    volume = tmp_path / "volumes"
    volume.mkdir()
    write_image(Volume(np.zeros((8, 16, 16), np.uint8) + 3), volume / "v_image.nii.gz")
    cases.append((["--synthetic", str(volume)], "cannot be compared"))
    other_size = tmp_path / "cache24"
    build_cache(scan_dataset("folder", simulated), other_size, PrepareSettings(size=(24, 24)))
    cases.append((["--synthetic", f"{other_size}:train"], "cannot be compared with [32, 32]"))
    for extra, words in cases:
        capsys.readouterr()
        assert main([*base, *extra]) == 2, words
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "r").exists() and not (simulated / "report").exists()


def test_a_3d_set_is_evaluated_on_slices_along_three_axes(encoder, tmp_path):
    grid = PhantomGrid.for_view("3D", size=24)
    root = tmp_path / "volumes"
    root.mkdir()
    for seed in range(6):
        phantom = phantom_label_map("3D", "ED", seed=seed, grid=grid)
        write_image(simulate_bmode(phantom.labels, seed=seed), root / f"v{seed}.nii.gz")
        write_label_map(phantom.labels, root / f"v{seed}_label.nii.gz")
    cache = tmp_path / "cache3d"
    settings = PrepareSettings(size=(24, 24, 24), split_fractions={"train": 0.5, "val": 0.5, "test": 0.0})
    build_cache(scan_dataset("folder", root), cache, settings)
    synthetic = tmp_path / "synthetic"
    synthetic.mkdir()
    for seed in (50, 51, 52):
        phantom = phantom_label_map("3D", "ED", seed=seed, grid=grid)
        write_image(simulate_bmode(phantom.labels, seed=seed), synthetic / f"s{seed}_image.nrrd")
        write_label_map(phantom.labels, synthetic / f"s{seed}_labels.nrrd")
    out = tmp_path / "report"
    command = ["evaluate", "--real", f"{cache}:val", "--synthetic", str(synthetic), "--encoder", str(encoder)]
    assert main([*command, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    views = report["feature_spaces"]["echo"]["synthetic_vs_real"]
    assert set(views) == {"axis0", "axis1", "axis2"} and all(
        v["frechet_distance"] >= 0 for v in views.values()
    )
    assert report["sets"]["synthetic"]["images"] == 3 and "lv_cavity" in report["structures"]["synthetic"]
    assert np.isfinite(report["spectrum_distance"]["synthetic_vs_real"])  # 24 px: fewer spectrum bins
    assert 0 <= report["memorisation"]["share_above"] <= 1  # volumes: mean slice features, middle slices
    assert "memorisation.png" in report["figures"]
    two_d = tmp_path / "flat"
    _phantoms(two_d, [1], "{}_image.nii.gz", "{}_labels.nii.gz")
    assert (
        main(
            [*command[:4], "--synthetic", str(two_d), "--encoder", str(encoder), "--out", str(tmp_path / "x")]
        )
        == 2
    )


def test_distances_in_the_echo_space_grow_with_blur_and_with_noise(eval_cache, encoder):
    """Through the (tiny) echo encoder: a set against itself is ~0, and the distance to the real training
    images grows with the blur and with the noise added to the real held-out images."""
    from scipy.ndimage import gaussian_filter

    from EchoSynthLib.evaluation.distribution import frechet_distance, kernel_distance
    from EchoSynthLib.models.features.network import EchoEncoder

    embed = EchoEncoder.load(encoder, device="cpu").embed
    cache = CacheIndex.open(eval_cache)
    train = embed(np.stack([cache.load(e)[0] for e in cache.cases("train")]))
    held = np.stack([cache.load(e)[0] for e in cache.cases("val")])
    assert frechet_distance(train, train) < 1e-6
    rng = np.random.default_rng(0)
    for name, change in (
        ("blur", lambda x, a: gaussian_filter(x, (0, a, a))),
        ("noise", lambda x, a: np.clip(x + rng.normal(0, a / 2, x.shape), -1, 1)),
    ):
        amounts = (0.0, 0.5, 1.0, 2.0)
        fd = [frechet_distance(train, embed(change(held, a).astype(np.float32))) for a in amounts]
        kid = [
            kernel_distance(train, embed(change(held, a).astype(np.float32)), subsets=20).mean
            for a in amounts
        ]
        # The growth itself, not its size: how far the tiny encoder's distance grows depends on the CPU it
        # trained on (x1.6 for blur on AMD EPYC, more elsewhere).
        assert fd == sorted(fd) and fd[-1] > 1.3 * fd[0], (name, fd)
        assert kid == sorted(kid) and kid[-1] > kid[0], (name, kid)


def test_the_downstream_protocol_runs_and_real_labels_beat_shuffled_ones(
    eval_cache, encoder, simulated, tmp_path
):
    out = tmp_path / "report"
    command = [
        "evaluate",
        "--real",
        f"{eval_cache}:val",
        "--synthetic",
        str(simulated),
        "--encoder",
        str(encoder),
        "--downstream",
        "--downstream-steps",
        "60",
        "--seeds",
        "0",
        "--out",
        str(out),
    ]
    assert main(command) == 0
    report = json.loads((out / "report.json").read_text())
    conditions = report["downstream"]["conditions"]
    assert set(conditions) == {
        "real only",
        "synthetic only",
        "real + synthetic",
        "real, labels shuffled (control)",
    }
    real, shuffled = conditions["real only"]["dice"], conditions["real, labels shuffled (control)"]["dice"]
    gains = [real[s]["mean"] - shuffled[s]["mean"] for s in ("lv_cavity", "lv_myocardium", "left_atrium")]
    assert min(gains) > 0 and np.mean(gains) > 0.05, gains  # phantoms look alike: shuffled maps still overlap
    low, high = real["lv_epi"]["ci95"]
    assert low <= real["lv_epi"]["mean"] <= high
    assert (
        report["downstream"]["published_dice_percent"]["Echo from noise: synthetic only"]["lv_endo"] == 88.6
    )
    assert "downstream.png" in report["figures"] and (out / "downstream.png").is_file()
    assert report["downstream"]["synthetic_images_on_test_label_maps"] == 0


def test_synthetic_images_on_the_test_label_maps_are_counted():
    from EchoSynthLib.evaluation.downstream import _shared_maps
    from EchoSynthLib.evaluation.image_sets import ImageSet

    labels = np.zeros((3, 4, 4), np.uint8)
    labels[1, 0, 0], labels[2, 1, 1] = 1, 2
    test = ImageSet("test", np.zeros((2, 4, 4), np.float32), labels[:2], ["a", "b"])
    synthetic = ImageSet("synthetic", np.zeros((3, 4, 4), np.float32), labels, ["x", "y", "z"])
    assert _shared_maps(synthetic, test) == 2


def test_make_demo_ends_with_a_report_when_an_encoder_is_installed(encoder, tmp_path, monkeypatch, capsys):
    import shutil

    from EchoSynthLib.evaluation.feature_spaces import DEFAULT_ENCODER

    monkeypatch.setenv("ECHOSYNTH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ECHOSYNTH_BUNDLED_MODELS", str(tmp_path / "none"))
    assert main(["demo", "--out", str(tmp_path / "bare")]) == 0
    out = capsys.readouterr().out  # listed for download, but no terminal to accept its licence on
    assert "no evaluation report (the model 'echo-encoder-camus' is not installed and its licence" in out
    assert "download echo-encoder-camus" not in out  # no progress bar before the licence is accepted
    assert not (tmp_path / "bare" / "report").exists()
    shutil.copytree(encoder, tmp_path / "bundled" / DEFAULT_ENCODER)
    monkeypatch.setenv("ECHOSYNTH_BUNDLED_MODELS", str(tmp_path / "bundled"))
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    report = json.loads((tmp_path / "demo" / "report" / "report.json").read_text())
    assert report["sets"]["synthetic"]["images"] == 12 and report["sets"]["real"]["images"] == 12
    assert (tmp_path / "demo" / "report" / "report.html").is_file()
    assert (tmp_path / "demo" / "montage.png").is_file()


class _Page(HTMLParser):
    """The ids of the top-level sections, the column classes of each table's head, and every tag."""

    def __init__(self):
        super().__init__()
        self.sections, self.tags, self.links, self.heads = [], [], [], []
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            if self.depth == 0:
                self.sections.append(attrs.get("id"))
            self.depth += 1
        elif tag == "table":
            self.heads.append([])
        elif tag == "th" and self.heads:
            self.heads[-1].append(attrs.get("class", ""))
        elif tag == "a":
            self.links.append(attrs.get("href"))

    def handle_endtag(self, tag):
        if tag == "section":
            self.depth -= 1


def test_a_baseline_is_measured_beside_the_synthetic_set_and_summarised(
    eval_cache, encoder, simulated, blurred, tmp_path, capsys
):
    """--baseline: every measure for the baseline too, the verdict says the sharp set beats the blurred
    one, the page shows them side by side, and the terminal ends with the summary table."""
    out = tmp_path / "report"
    capsys.readouterr()
    report = evaluate_with_baseline(eval_cache, encoder, simulated, blurred, out)
    assert report["sets"]["baseline"] == {"description": str(blurred), "images": 12, "labelled": True}
    echo = report["feature_spaces"]["echo"]
    assert (
        echo["baseline_vs_real"]["2d"]["frechet_distance"]
        > echo["synthetic_vs_real"]["2d"]["frechet_distance"]
    )
    assert set(report["diversity_ms_ssim"]) == {"synthetic", "baseline", "real"}
    assert set(report["spectrum_distance"]) == {
        "synthetic_vs_real",
        "baseline_vs_real",
        "reference_train_vs_real",
    }
    assert set(report["structures"]) == {"real", "synthetic", "baseline"}
    found = report["verdict"]
    assert found["beats_baseline"] is True and found["headline"].startswith("Beats the baseline")
    assert found["nearer_real_than_baseline"]["measures"] > found["nearer_real_than_baseline"]["of"] / 2
    printed = capsys.readouterr().out.splitlines()
    header = printed.index(next(line for line in printed if line.startswith("measure")))
    assert printed[header].split() == ["measure", "synthetic", "baseline", "real", "(ref.)"]
    assert set(printed[header + 1]) == {"-", " "}
    assert printed[header + 2].startswith("echo Fréchet distance")
    assert any(line.startswith("Beats the baseline") for line in printed)
    assert printed[-1] == f"report: {out}/report.html (all numbers: {out}/report.json)"
    page = _Page()
    page.feed((out / "report.html").read_text())
    assert page.sections[0] == "verdict" and "pre" not in page.tags and "script" not in page.tags
    assert {"distribution-echo", "diversity", "spectrum", "structures", "memorisation"} <= set(page.sections)
    three = [head for head in page.heads if {"synthetic", "baseline", "real"} <= set(head)]
    assert len(three) >= 4  # echo distances, diversity, spectrum, structures
    assert "report.json" in page.links


def test_the_summary_reads_any_report_and_the_page_escapes_its_text(tmp_path):
    """No baseline: the terminal table has no baseline column and the verdict says so; a set named with
    markup is shown as text; a measure the set loses on is not marked better."""
    from EchoSynthLib.evaluation.page import html_report
    from EchoSynthLib.evaluation.summary import Row, terminal_summary, verdict

    values = {"frechet_distance": 30.0, "kid": {"mean": 0.5, "standard_error": 0.01}, "precision": 0.2,
              "recall": 0.1, "density": 0.3, "coverage": 0.2}  # fmt: skip
    report = {
        "created_by": "EchoSynth test",
        "created": "now",
        "sets": {
            "real": {"description": "real", "images": 4, "labelled": True},
            "synthetic": {"description": "<b>odd</b> & name", "images": 4, "labelled": False},
            "train": {"description": "train", "images": 4, "labelled": True},
        },
        "feature_spaces": {
            "echo": {
                "description": "echo",
                "synthetic_vs_real": {"2d": values},
                "reference_real_vs_train": {"2d": {**values, "frechet_distance": 5.0}},
            },
            "segmenter": "not computed: no --segmenter given",
        },
        "memorisation": {"share_above": 0.5, "flagged": ["a", "b"], "closest": []},
        "figures": [],
    }
    text = terminal_summary(report)
    assert text.splitlines()[0].split() == ["measure", "synthetic", "real", "(ref.)"]
    words = " ".join(text.split())  # the verdict's sentences are wrapped at 100 columns
    assert "No baseline was given" in words and "far from real, 6×" in words
    assert "more than new images show" in words and max(len(line) for line in text.splitlines()) <= 100
    assert verdict(report)["beats_baseline"] is None
    page = html_report(report, tmp_path)
    assert "&lt;b&gt;odd&lt;/b&gt; &amp; name" in page and "<b>odd</b>" not in page
    assert "not computed: no --segmenter given" in page and "<pre" not in page
    assert Row("m", "", "", 2.0, 3.0, 1.0, "lower").better() == "synthetic"
    assert Row("m", "", "", 2.0, 3.0, 2.9, "near").better() == "baseline"
    assert Row("m", "", "", 2.0, None, 1.0, "lower").better() is None
