"""A labelled training set made by the project itself: phantom hearts and their simulated images, written
as image + label files that ``echosynth prepare folder`` reads like any dataset (2D apical views or 3D LV
volumes). Used by the demo, the tests, and the 3D latent models' CPU proof (no 3D data is shipped)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.data.io import write_image, write_label_map
from EchoSynthLib.data.outputs import owned_folder
from EchoSynthLib.errors import InputError
from EchoSynthLib.simulation.bmode import simulate_bmode

IMAGE_NAME, LABEL_NAME = "{}_image.nii.gz", "{}_labels.nii.gz"
PHANTOM_DATASET_COMMAND = "phantom-dataset"  # who wrote (and may replace) the folder


def write_phantom_dataset(
    out: str | os.PathLike,
    seeds: Iterable[int],
    views: tuple[str, ...] = ("4CH", "2CH"),
    phases: tuple[str, ...] = ("ED", "ES"),
    size: int | None = None,
    names: tuple[str, str] = (IMAGE_NAME, LABEL_NAME),
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """For each heart ``seed``, view and phase: the phantom label map and its simulated image (the same
    seed), named ``h{seed}_{view}_{phase}``. The folder appears whole; the files written are returned."""
    seeds = list(seeds)
    if not seeds:
        raise InputError("a phantom dataset needs at least one heart")
    if "3D" in views and len(views) > 1:
        raise InputError("a phantom dataset is either 2D views or 3D volumes, not both")
    out = Path(out)
    with owned_folder(out, PHANTOM_DATASET_COMMAND) as staging:
        for seed in seeds:
            for view in views:
                grid = PhantomGrid.for_view(view, size=size)
                for phase in phases:
                    phantom = phantom_label_map(view, phase, seed=seed, grid=grid)
                    name = f"h{seed}_{view.lower()}_{phase.lower()}"
                    write_image(simulate_bmode(phantom.labels, seed=seed), staging / names[0].format(name))
                    write_label_map(phantom.labels, staging / names[1].format(name))
                    if progress is not None:
                        progress(name)
        written = sorted(p.name for p in staging.iterdir() if not p.name.startswith("."))
    return [out / name for name in written]
