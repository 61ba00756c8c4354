"""``echosynth evaluate``: a synthetic set against real images, as the report a reviewer asks for.

Stages: read the sets (onto the real cache's grid), features in each feature space (cached in the user
cache, so a rerun is quick), distribution metrics (Fréchet distance, KID, precision / recall, density /
coverage) with real held-out vs training as the reference row, diversity, grey levels and speckle per
structure, the power spectrum, paired similarity (translations), label adherence, memorisation, the
downstream protocol, figures. A baseline set (``--baseline``: the simulator's images of the same label
maps, say) is measured like the synthetic set, side by side. ``report.json``, ``report.html`` (a page a person
reads: ``evaluation.page``; figures embedded) and the PNG figures are written to a folder that appears whole
(nothing partial on failure).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from EchoSynthLib import __version__
from EchoSynthLib.data.outputs import input_paths, owned_folder
from EchoSynthLib.errors import InputError
from EchoSynthLib.evaluation import distribution, figures
from EchoSynthLib.evaluation.feature_spaces import DEFAULT_ENCODER, FeatureSpace, features_of
from EchoSynthLib.evaluation.image_sets import ImageSet, cache_set, open_set, paired_in_order
from EchoSynthLib.evaluation.page import html_report
from EchoSynthLib.evaluation.summary import verdict
from EchoSynthLib.metrics import image_metrics
from EchoSynthLib.metrics.image_metrics import middle_slices

FORMAT_VERSION = 1
# The stages ``evaluate`` reports to its ``stage`` callback, in order (after ``load_inputs``).
STAGES = (
    "features",
    "distribution metrics",
    "image statistics",
    "label adherence",
    "memorisation",
    "downstream",
    "figures and report",
)


REPORT_COMMAND, FILTER_COMMAND = "evaluate", "evaluate --filter"  # who wrote a report / filtered folder
REPORT_FILES = ("report.json", "report.html")  # a report folder written before folders carried a mark


@dataclass
class EvaluationOptions:
    """What ``evaluate`` compares and computes (see the CLI's help for each)."""

    real: str
    synthetic: str
    out: Path
    train: str | None = None
    labels: str | None = None
    baseline: str | None = None
    baseline_labels: str | None = None
    paired_with: str | None = None
    encoder: str = DEFAULT_ENCODER
    segmenter: str | None = None
    inception_weights: str | None = None
    downstream: bool = False
    downstream_steps: int = 500
    seeds: tuple[int, ...] = (0, 1)
    filter_out: Path | None = None
    device: str = "auto"
    feature_cache: Path | None = None


def _distribution(real: dict[str, np.ndarray], synthetic: dict[str, np.ndarray]) -> dict[str, Any]:
    out = {}
    for view, real_features in real.items():
        kid = distribution.kernel_distance(real_features, synthetic[view])
        manifold = (
            distribution.manifold_metrics(real_features, synthetic[view])
            if min(len(real_features), len(synthetic[view])) > 3
            else None
        )
        out[view] = {
            "frechet_distance": distribution.frechet_distance(real_features, synthetic[view]),
            "kid": {"mean": kid.mean, "standard_error": kid.standard_error, "subset_size": kid.subset_size},
            **(asdict(manifold) if manifold is not None else {}),
        }
    return out


def _mirrored(images: ImageSet) -> ImageSet:
    return ImageSet(
        images.description + " (mirrored)", np.ascontiguousarray(images.images[..., ::-1]), None, images.names
    )


def _spaces(options: EvaluationOptions) -> tuple[list[FeatureSpace], dict[str, str]]:
    from EchoSynthLib.evaluation.feature_spaces import echo_space, inception_space, segmenter_space

    inception = inception_space(options.inception_weights, options.device)  # checks the file first
    spaces = [echo_space(options.encoder, options.device)]
    skipped: dict[str, str] = {}
    if options.segmenter is not None:
        spaces.append(segmenter_space(options.segmenter, options.device))
    else:
        skipped["segmenter"] = "not computed: no --segmenter given"
    if isinstance(inception, str):
        skipped["inception"] = inception
    else:
        spaces.append(inception)
    return spaces, skipped


@dataclass
class Inputs:
    """Everything ``evaluate`` reads before it computes: the sets, the feature spaces and the reasons some
    were not computed. Loading them first makes bad input fail before any progress is shown."""

    real: ImageSet
    train: ImageSet
    synthetic: ImageSet
    paired: ImageSet | None
    spaces: list[FeatureSpace]
    skipped_spaces: dict[str, str]
    seconds: float
    baseline: ImageSet | None = None


def load_inputs(options: EvaluationOptions) -> Inputs:
    """Read and check the sets and models of ``options``; an InputError names the first problem."""
    began = time.perf_counter()
    real, cache = cache_set(options.real, "val")
    train = cache_set(options.train or f"{cache.path}:train", "train")[0]
    synthetic = open_set(options.synthetic, cache, options.labels)
    if synthetic.spatial_dims != real.spatial_dims:
        raise InputError(
            f"{options.synthetic}: a {synthetic.spatial_dims}D set cannot be compared with the "
            f"{real.spatial_dims}D real cache {options.real}"
        )
    paired = open_set(options.paired_with, cache) if options.paired_with else None
    baseline = open_set(options.baseline, cache, options.baseline_labels) if options.baseline else None
    if baseline is not None and baseline.spatial_dims != real.spatial_dims:
        raise InputError(
            f"{options.baseline}: a {baseline.spatial_dims}D baseline cannot be compared with the "
            f"{real.spatial_dims}D real cache {options.real}"
        )
    if options.segmenter is not None and synthetic.labels is None:
        raise InputError(
            f"{options.synthetic}: label adherence needs a label map for every image (see --labels)"
        )
    if options.downstream and (synthetic.labels is None or real.spatial_dims != 2):
        raise InputError(f"{options.synthetic}: the downstream protocol needs labelled 2D images")
    spaces, skipped = _spaces(options)
    return Inputs(real, train, synthetic, paired, spaces, skipped, time.perf_counter() - began, baseline)


def evaluate(
    options: EvaluationOptions, stage: Callable[[str], None] | None = None, inputs: Inputs | None = None
) -> dict[str, Any]:
    """Run every stage and write the report folder; returns the report. ``inputs``: from ``load_inputs``
    (read here when not given)."""
    inputs = inputs or load_inputs(options)
    real, train, synthetic, paired = inputs.real, inputs.train, inputs.synthetic, inputs.paired
    baseline = inputs.baseline
    # the sets measured against the real images: the synthetic set and, when given, the baseline
    measured = {"synthetic": synthetic} | ({"baseline": baseline} if baseline is not None else {})
    spaces, skipped_spaces = inputs.spaces, inputs.skipped_spaces
    timings: dict[str, float] = {"reading the sets and models": round(inputs.seconds, 2)}
    clock = [time.perf_counter()]

    def begin(name: str) -> None:
        clock[0] = time.perf_counter()
        if stage is not None:
            stage(name)

    def done(name: str) -> None:
        timings[name] = round(time.perf_counter() - clock[0], 2)

    begin("features")
    cache_dir = options.feature_cache
    features = {
        space.key: {
            name: features_of(space, images, cache_dir)
            for name, images in (("real", real), *measured.items(), ("train", train))
        }
        for space in spaces
    }
    done("features")

    begin("distribution metrics")
    report: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created_by": f"EchoSynth {__version__}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sets": {
            name: {"description": s.description, "images": len(s.images), "labelled": s.labels is not None}
            for name, s in (("real", real), *measured.items(), ("train", train))
        },
        "feature_spaces": {},
    }
    for space in spaces:
        found = features[space.key]
        report["feature_spaces"][space.key] = {
            "description": space.description,
            "synthetic_vs_real": _distribution(found["real"], found["synthetic"]),
            "reference_real_vs_train": _distribution(found["train"], found["real"]),
        }
        if baseline is not None:
            report["feature_spaces"][space.key]["baseline_vs_real"] = _distribution(
                found["real"], found["baseline"]
            )
    report["feature_spaces"] |= skipped_spaces
    done("distribution metrics")

    begin("image statistics")
    report["diversity_ms_ssim"] = {
        name: image_metrics.diversity(s.images) for name, s in (*measured.items(), ("real", real))
    }
    report["spectrum_distance"] = {
        f"{name}_vs_real": image_metrics.spectrum_distance(real.images, s.images)
        for name, s in measured.items()
    }
    report["spectrum_distance"]["reference_train_vs_real"] = image_metrics.spectrum_distance(
        train.images, real.images
    )
    report["structures"] = {"real": image_metrics.structure_statistics(real.images, real.labels)}
    for name, s in measured.items():
        if s.labels is not None:
            report["structures"][name] = image_metrics.structure_statistics(s.images, s.labels)
    if paired is not None:
        report["paired"] = image_metrics.paired_similarity(
            synthetic.images, paired_in_order(synthetic, paired)
        )
    done("image statistics")

    begin("label adherence")
    if options.segmenter is not None:
        from EchoSynthLib.models.segmenter.network import Segmenter

        segmenter = Segmenter.load(options.segmenter, options.device)
        report["adherence"] = {
            "segmenter": str(options.segmenter),
            **{
                name: image_metrics.adherence(segmenter.predict_canonical(s.images), s.labels)
                for name, s in (*measured.items(), ("real", real))
                if s.labels is not None
            },
        }
    else:
        report["adherence"] = "not computed: no --segmenter given"
    done("label adherence")

    begin("memorisation")
    from EchoSynthLib.evaluation.memorisation import memorisation, nearest_ssim

    echo = spaces[0]
    view = "2d" if real.spatial_dims == 2 else "axis0"

    def per_image(name: str, images: ImageSet, mirrored: bool = False) -> np.ndarray:
        """One echo feature vector per image: a volume's is the mean over its slices (first axis)."""
        found = (
            features_of(echo, _mirrored(images), cache_dir, only=view)[view]
            if mirrored
            else features["echo"][name][view]
        )
        return (
            found
            if images.spatial_dims == 2
            else found.reshape(len(images.images), -1, found.shape[1]).mean(1)
        )

    check = memorisation(
        (
            per_image("synthetic", synthetic),
            per_image("synthetic", synthetic, True),
            middle_slices(synthetic.images),
        ),
        (per_image("real", real), per_image("real", real, True), middle_slices(real.images)),
        (per_image("train", train), middle_slices(train.images)),
    )
    ssim = nearest_ssim(synthetic.images, train.images, check.nearest)
    order = np.argsort(-check.similarity)
    report["memorisation"] = {
        "feature_space": echo.description,
        "threshold_cosine": check.threshold,
        "threshold_pixel_correlation": check.pixel_threshold,
        "rule": "above the 95th percentile of real held-out images' similarity to the training set, in "
        "echo features (cosine, mirror included) or in pixels (correlation, shifts up to 2 px, mirror)",
        "share_above": check.share_flagged,
        "flagged": [synthetic.names[i] for i in np.nonzero(check.flagged)[0]],
        "closest": [
            {
                "synthetic": synthetic.names[i],
                "training": train.names[check.nearest[i]],
                "cosine": float(check.similarity[i]),
                "pixel_correlation": float(check.pixel[i]),
                "ssim": float(ssim[i]),
            }
            for i in order[:10]
        ],
    }
    done("memorisation")

    begin("downstream")
    if options.downstream:
        from EchoSynthLib.evaluation.downstream import DownstreamSettings, downstream

        report["downstream"] = downstream(
            train, synthetic, real, DownstreamSettings(options.downstream_steps, tuple(options.seeds))
        )
    else:
        report["downstream"] = "not run (--downstream)"
    done("downstream")

    begin("figures and report")
    sources = input_paths(
        options.real,
        options.train,
        options.synthetic,
        options.labels,
        options.paired_with,
        options.baseline,
        options.baseline_labels,
    )
    with owned_folder(options.out, REPORT_COMMAND, sources, also_owned=REPORT_FILES) as staging:
        made = [figures.sample_grid({"real": real, **measured}, staging / "samples.png")]
        if synthetic.labels is not None:
            made.append(
                figures.histograms(
                    image_metrics.structure_histograms(real.images, real.labels),
                    image_metrics.structure_histograms(synthetic.images, synthetic.labels),
                    staging / "histograms.png",
                    None
                    if baseline is None or baseline.labels is None
                    else image_metrics.structure_histograms(baseline.images, baseline.labels),
                )
            )
        echo_features = features["echo"]
        made.append(
            figures.embeddings(
                echo_features["real"][view],
                echo_features["synthetic"][view],
                staging / "embedding.png",
                echo_features["baseline"][view] if baseline is not None else None,
            )
        )
        made.append(
            figures.memorisation_pairs(
                synthetic.images,
                train.images,
                order,
                check.nearest,
                check.similarity,
                staging / "memorisation.png",
            )
        )
        if isinstance(report["downstream"], dict):
            made.append(
                figures.downstream_bars(report["downstream"]["conditions"], staging / "downstream.png")
            )
        report["figures"] = [p.name for p in made]
        done("figures and report")
        report["seconds"] = timings
        report["verdict"] = verdict(report)
        (staging / "report.json").write_text(json.dumps(report, indent=1))
        (staging / "report.html").write_text(html_report(report, staging))
    if options.filter_out is not None:
        write_filtered(synthetic, check.flagged, options.filter_out, [*sources, options.out])
    return report


def write_filtered(
    images: ImageSet, flagged: np.ndarray, out: Path, inputs: Sequence[Path] = ()
) -> list[Path]:
    """Copy the images below the memorisation threshold (with their label files) to ``out`` (whole; never
    one of ``inputs``)."""
    import shutil

    from EchoSynthLib.data.io import with_data_files

    if not images.files:
        raise InputError("--filter needs a folder of synthetic images (a cache split cannot be filtered)")
    written = []
    with owned_folder(out, FILTER_COMMAND, inputs) as staging:
        for path, bad in zip(images.files, flagged, strict=True):
            if not bad:
                for source in with_data_files(path):
                    shutil.copy2(source, staging / source.name)
                    written.append(out / source.name)
    return written
