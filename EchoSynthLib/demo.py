"""The demo job: phantom anatomy -> simulated echo, written as medical images plus a PNG montage."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from EchoSynthLib.anatomy import phantom_label_map
from EchoSynthLib.data.atomic import staged_directory
from EchoSynthLib.data.io import write_image, write_label_map
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
_VIEW_SEED_OFFSET = {"4CH": 0, "2CH": 1, "3D": 2}


def run_demo(
    out_dir: str | os.PathLike, seed: int = 0, progress: Callable[[str], None] | None = None
) -> list[Path]:
    """Write the demo set to ``out_dir`` (replaced whole, only once everything succeeded); ``progress`` is
    called with each case's name once it is written."""
    out_dir = Path(out_dir)
    settings = SimulatorSettings()
    panels, manifest = [], {"seed": seed, "simulator": settings.__dict__, "cases": []}
    with staged_directory(out_dir) as staging:
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
