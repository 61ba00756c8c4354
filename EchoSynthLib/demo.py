"""The demo job: phantom anatomy -> simulated echo, written as medical images plus a PNG montage; and, for
``echosynth demo --model M``, the same 2D label maps through a trained generator (``demo_model_images``)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from EchoSynthLib.anatomy import phantom_label_map
from EchoSynthLib.data.io import write_image, write_label_map
from EchoSynthLib.data.outputs import owned_folder, scratch_folder
from EchoSynthLib.simulation import SimulatorSettings, simulate_bmode
from EchoSynthLib.visualization import panels_for, save_montage

# (view, phase, file stem, image suffix, label suffix)
DEMO_CASES = (
    ("4CH", "ED", "a4c_ed", ".nii.gz", ".nii.gz"),
    ("4CH", "ES", "a4c_es", ".nii.gz", ".nii.gz"),
    ("2CH", "ED", "a2c_ed", ".nii.gz", ".nii.gz"),
    ("2CH", "ES", "a2c_es", ".nii.gz", ".nii.gz"),
    ("3D", "ED", "lv3d_ed", ".nrrd", ".seg.nrrd"),
)
# One heart per view, shared by its ED and ES frames.
DEMO_COMMAND = "demo"  # who wrote (and may replace) the demo folder and its model subfolders
DEMO_FILES = ("manifest.json", "montage.png")  # a demo folder written before folders carried a mark
_VIEW_SEED_OFFSET = {"4CH": 0, "2CH": 1, "3D": 2}


def run_demo(
    out_dir: str | os.PathLike, seed: int = 0, progress: Callable[[str], None] | None = None
) -> list[Path]:
    """Write the demo set to ``out_dir`` (replaced whole, only once everything succeeded); ``progress`` is
    called with each case's name once it is written."""
    out_dir = Path(out_dir)
    settings = SimulatorSettings()
    panels, manifest = [], {"seed": seed, "simulator": settings.__dict__, "cases": []}
    with owned_folder(out_dir, DEMO_COMMAND, also_owned=DEMO_FILES) as staging:
        for view, phase, stem, image_suffix, label_suffix in DEMO_CASES:
            phantom = phantom_label_map(view, phase, seed=seed + _VIEW_SEED_OFFSET[view])
            image = simulate_bmode(phantom.labels, seed=seed, settings=settings)
            write_label_map(phantom.labels, staging / f"{stem}_labels{label_suffix}")
            write_image(image, staging / f"{stem}_image{image_suffix}")
            panels += panels_for(f"{view} {phase}", image, phantom.labels)
            manifest["cases"].append(
                {
                    "view": view,
                    "phase": phase,
                    "image": f"{stem}_image{image_suffix}",
                    "labels": f"{stem}_labels{label_suffix}",
                    "heart": phantom.heart.at_phase(phase).as_dict(),
                }
            )
            if progress:
                progress(f"{view} {phase}")
        save_montage(panels, staging / "montage.png")
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        written = sorted(p.name for p in staging.iterdir())
    return [out_dir / name for name in written]


def demo_report(out_dir: str | os.PathLike, seed: int = 0, encoder: str | None = None) -> Path:
    """A small ``evaluate`` report in ``out_dir``: 12 simulated images of new phantom hearts against a second
    phantom set (a cache of 24 simulated images, half of them its held-out split), in the shipped echo
    encoder's feature space. Shows what a report holds; the numbers compare the simulator with itself."""
    from EchoSynthLib.cache.store import build_cache
    from EchoSynthLib.datasets import scan_dataset
    from EchoSynthLib.evaluation.feature_spaces import DEFAULT_ENCODER
    from EchoSynthLib.evaluation.report import EvaluationOptions, evaluate
    from EchoSynthLib.preprocessing.prepare import PrepareSettings
    from EchoSynthLib.simulation.dataset import write_phantom_dataset

    with scratch_folder("echosynth-demo-") as scratch:
        root = Path(scratch) / "reference"
        write_phantom_dataset(
            root, range(seed + 100, seed + 106), size=128, names=("{}.nii.gz", "{}_label.nii.gz")
        )
        cache = Path(scratch) / "cache"
        fractions = {"train": 0.5, "val": 0.5, "test": 0.0}
        build_cache(
            scan_dataset("folder", root), cache, PrepareSettings(size=(128, 128), split_fractions=fractions)
        )
        synthetic = Path(scratch) / "synthetic"
        write_phantom_dataset(synthetic, range(seed + 200, seed + 203), size=128)
        options = EvaluationOptions(
            real=f"{cache}:val",
            synthetic=str(synthetic),
            out=Path(out_dir),
            encoder=encoder or DEFAULT_ENCODER,
        )
        evaluate(options)
    return Path(out_dir) / "report.html"


def demo_model_images(demo_dir: str | os.PathLike, model: str, seed: int = 0, steps: int = 25) -> list[Path]:
    """Images of the demo's 2D label maps by a trained generator, with a montage, into ``demo_dir/MODEL``
    (replaced whole once everything succeeded). The maps are those ``run_demo`` wrote."""
    from EchoSynthLib.data.io import read_label_map
    from EchoSynthLib.inference.generators import GeneratorSettings, open_generator

    demo_dir = Path(demo_dir)
    generator = open_generator(GeneratorSettings(model, steps=steps))
    name = Path(model).name
    panels = []
    with owned_folder(demo_dir / name, DEMO_COMMAND) as staging:
        for view, phase, stem, image_suffix, label_suffix in DEMO_CASES:
            if view == "3D":
                continue
            labels = read_label_map(demo_dir / f"{stem}_labels{label_suffix}")
            image = generator.generate(generator.prepare(labels), 1, seed)[0]
            write_image(image, staging / f"{stem}_image{image_suffix}")
            panels += panels_for(f"{view} {phase}", image, labels)
        save_montage(panels, staging / "montage.png")
        written = sorted(p.name for p in staging.iterdir())
    return [demo_dir / name / file for file in written]
