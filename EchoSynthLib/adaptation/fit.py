"""Fitting a look: the chain of degradations that brings a model's images nearest a scanner's.

The distance is the Fréchet distance between echo-encoder features (``evaluation.feature_spaces``, the
distance ``echosynth evaluate`` reports) of the model's images in the look and of the scanner's images.
The search is greedy and derivative-free (the chain has JPEG, nearest-neighbour resampling and choices in
it): each round tries every kind not yet in the look with ``candidates`` random settings, nudges the
settings of the kinds in it, and tries it without each of them; the best proposal is kept when it is
nearer by at least ``MIN_GAIN``, else the search stops. Every proposal sees the same images with the same
noise (common random numbers), so the distance is a deterministic function of the look and proposals are
compared fairly. After every round the state is written (``FitState``): a killed run resumes at the round
it was in, with the same proposals (each round's are drawn from (seed, round)).

Written here because no maintained library searches over a chain of image degradations; the distance and
the features are the project's own (MONAI's ``FIDMetric`` underneath).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from EchoSynthLib.augmentation.degradations import KINDS, SETTINGS_PER_KIND
from EchoSynthLib.data.atomic import write_atomically
from EchoSynthLib.evaluation.distribution import frechet_distance
from EchoSynthLib.models.adapted.look import FittedLook

MIN_GAIN = 0.01  # a proposal must be at least 1 % nearer to be kept
NUDGE = 0.15  # the spread of a nudge to a kind's settings (they lie in [0, 1])

Embed = Callable[[np.ndarray], np.ndarray]


@dataclass
class FitState:
    """Where a fit stands: the rounds done, the look so far, its distance, and each round's record."""

    rounds_done: int = 0
    kinds: list[str] = field(default_factory=list)
    settings: list[list[float]] = field(default_factory=lambda: FittedLook.plain().settings.tolist())
    distance: float | None = None
    start_distance: float | None = None
    history: list[dict] = field(default_factory=list)
    finished: bool = False

    @property
    def look(self) -> FittedLook:
        return FittedLook(tuple(self.kinds), np.asarray(self.settings, dtype=np.float64))

    def save(self, path: Path) -> None:
        write_atomically(path, lambda tmp: Path(tmp).write_text(json.dumps(asdict(self), indent=1)))

    @classmethod
    def load(cls, path: Path) -> FitState | None:
        """The state written at ``path``, or None where there is none (or it cannot be read)."""
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def proposals(look: FittedLook, rng: np.random.Generator, candidates: int) -> list[FittedLook]:
    """A round's proposals: each missing kind added (``candidates`` random settings each), the settings of
    each kind in the look nudged (half as many), and the look without each of its kinds."""
    found = []
    for index, kind in enumerate(KINDS):
        if kind in look.kinds:
            for _ in range(max(1, candidates // 2)):
                settings = look.settings.copy()
                settings[index] += rng.normal(0.0, NUDGE, SETTINGS_PER_KIND)
                found.append(look.with_kinds(look.kinds, settings))
            found.append(look.with_kinds(tuple(k for k in look.kinds if k != kind)))
        else:
            for _ in range(candidates):
                settings = look.settings.copy()
                settings[index] = rng.random(SETTINGS_PER_KIND)
                found.append(look.with_kinds((*look.kinds, kind), settings))
    return found


def fit_look(
    images: torch.Tensor,
    inside: torch.Tensor,
    target: np.ndarray,
    embed: Embed,
    state_path: Path,
    *,
    rounds: int = 5,
    candidates: int = 8,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> FitState:
    """The look (``FitState.look``) that brings ``images`` (B, 1, H, W) in [-1, 1], black outside ``inside``,
    nearest to the features ``target`` (N, F) of the scanner's images; resumed from ``state_path`` when a
    run was stopped there. ``progress(round, rounds)`` after each round."""
    seeds = [seed * 100_003 + b for b in range(images.shape[0])]

    def distance(look: FittedLook) -> float:
        looked = look.apply(images, inside, seeds) if look.kinds else images
        return frechet_distance(target, embed(looked[:, 0].numpy()))

    state = FitState.load(state_path) or FitState()
    if state.distance is None:
        state.distance = state.start_distance = distance(state.look)
        state.save(state_path)
    while not state.finished and state.rounds_done < rounds:
        rng = np.random.default_rng([seed, state.rounds_done])
        scored = [(distance(look), look) for look in proposals(state.look, rng, candidates)]
        best, look = min(scored, key=lambda pair: pair[0])
        kept = best < state.distance * (1.0 - MIN_GAIN)
        state.history.append(
            {
                "round": state.rounds_done,
                "proposals": len(scored),
                "best": best,
                "kept": kept,
                "kinds": list(look.kinds),
            }
        )
        if kept:
            state.kinds, state.settings, state.distance = list(look.kinds), look.settings.tolist(), best
        else:
            state.finished = True
        state.rounds_done += 1
        state.save(state_path)
        if progress is not None:
            progress(state.rounds_done, rounds)
    return state
