"""Fitting the shape model to a cache's training maps (``echosynth train shape-model``): per view, each
patient's ED and ES maps as one vector of signed distances (so a drawn heart has both phases and a
plausible ejection fraction), and scikit-learn's principal component analysis of those vectors. One fit,
no steps to resume: the trainer meets the command line's contract with a run of one step."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from EchoSynthLib.data.atomic import write_atomically
from EchoSynthLib.engine.settings import RunSettings
from EchoSynthLib.errors import InputError
from EchoSynthLib.models.shape_model.config import ShapeModelConfig
from EchoSynthLib.models.shape_model.distances import signed_distances

PHASES = ("ED", "ES")
MIN_HEARTS = 3  # per view: fewer is not a distribution
VIEWS = ("2CH", "3CH", "4CH")


@dataclass
class _State:
    step: int = 0


def view_and_phase(entry: dict) -> tuple[str, str | None]:
    """A cache case's view and phase: its metadata's (CAMUS), else read from its id ("pt3_4CH_ED"); a case
    of no known view is of view "any"."""
    meta = entry.get("metadata", {})
    case = entry["case_id"].upper()
    phase = meta.get("phase") or next((p for p in PHASES if case.endswith(f"_{p}")), None)
    view = meta.get("view") or next((v for v in VIEWS if f"_{v}" in case), "any")
    return view, phase


def heart_vectors(cache, split: str, grid: int, band: float) -> dict[str, np.ndarray]:
    """view -> (hearts, 2 * regions * grid * grid): every patient's ED and ES maps of that view, as signed
    distances (patients with both phases only)."""
    maps: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for entry in cache.cases(split):
        view, phase = view_and_phase(entry)
        if phase not in PHASES:
            continue
        _, labels = cache.load(entry)
        canonical = cache.label_map(entry, labels).array
        maps.setdefault((entry["patient_id"], view), {})[phase] = signed_distances(canonical, grid, band)
    vectors: dict[str, list[np.ndarray]] = {}
    for (_, view), phases in sorted(maps.items()):
        if len(phases) == len(PHASES):
            vectors.setdefault(view, []).append(np.concatenate([phases[p].ravel() for p in PHASES]))
    return {view: np.stack(rows) for view, rows in vectors.items()}


class ShapeFit:
    """The shape model of a cache's training split, written as a package into ``run / 'model'``."""

    def __init__(
        self, data: str | Path, run: str | Path, config: ShapeModelConfig, settings: RunSettings
    ) -> None:
        from EchoSynthLib.cache.store import CacheIndex
        from EchoSynthLib.training.distributed import rank_from_environment

        self.cache = CacheIndex.open(data)
        self.run = Path(run)
        manifest = self.cache.manifest
        if len(manifest.shape) != 2 and manifest.shape[0] != 1:
            raise InputError(f"{data}: the shape model is 2D; this cache is 3D")
        cases = self.cache.cases("train")
        if not cases:
            raise InputError(f"{data}: its train split is empty; the shape model is fitted to training maps")
        grid = cases[0]["metadata"]["grid"]
        self.config = config.with_overrides(
            {"image_shape": tuple(manifest.shape[-2:]), "spacing": tuple(grid["spacing"])}
        )
        self.settings = settings
        self.rank = rank_from_environment()
        self.device = "cpu"
        self.state = _State(1 if (self.run / "model").is_dir() else 0)

    def fit(self, progress: Callable[[int, dict[str, float]], None] | None = None) -> Path:
        """Fit (unless done) and write the package; ``progress(step, numbers)`` once at the end."""
        import torch
        from sklearn.decomposition import PCA

        from EchoSynthLib.store.families import SHAPE_MODEL
        from EchoSynthLib.store.package import save_package
        from EchoSynthLib.training.cards import model_card, training_provenance

        package = self.run / "model"
        if self.state.step:
            return package
        vectors = heart_vectors(self.cache, "train", self.config.grid, self.config.band)
        small = {view: len(rows) for view, rows in vectors.items() if len(rows) < MIN_HEARTS}
        if not vectors or small:
            raise InputError(
                f"the shape model needs at least {MIN_HEARTS} patients with ED and ES maps per view "
                f"(phases from the cache's metadata or case ids ending _ED / _ES); found {small or 'none'}"
            )
        components, numbers = {}, {}
        for view, rows in vectors.items():
            pca = PCA(n_components=self.config.variance, svd_solver="full", random_state=self.config.seed)
            pca.fit(rows.astype(np.float64))
            components[view] = {
                "mean": torch.from_numpy(pca.mean_.astype(np.float32)),
                "modes": torch.from_numpy(pca.components_.astype(np.float16)),
                "scales": torch.from_numpy(np.sqrt(pca.explained_variance_).astype(np.float32)),
            }
            numbers[f"{view}_modes"] = float(pca.n_components_)
            numbers[f"{view}_hearts"] = float(len(rows))
        config = self.config.with_overrides({"views": tuple(sorted(vectors))})
        self.run.mkdir(parents=True, exist_ok=True)
        card = model_card(config, self.cache.manifest, 1, kind="statistical shape model of label maps")
        save_package(
            package,
            SHAPE_MODEL.kind,
            config.as_dict(),
            None,
            card,
            training_provenance(self.cache, 1),
            components={f"view_{v}": parts for v, parts in components.items()},
        )
        line = json.dumps({"step": 1, **numbers}) + "\n"
        write_atomically(self.run / "log.jsonl", lambda tmp: tmp.write_text(line))
        self.state.step = 1
        if progress is not None:
            progress(1, numbers)
        return package
