"""Patient-level, deterministic train/val/test splits: no patient is ever in two splits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from EchoSynthLib.data.cases import SPLITS, CaseRef
from EchoSynthLib.errors import InputError


def _dataset_splits(refs: Sequence[CaseRef]) -> dict[str, str]:
    """patient -> split as the dataset itself defines it (for the refs that carry one)."""
    by_patient: dict[str, str] = {}
    for ref in refs:
        if ref.split is None:
            continue
        if ref.split not in SPLITS:
            raise InputError(f"{ref.case_id}: unknown split '{ref.split}' (known: {', '.join(SPLITS)})")
        previous = by_patient.setdefault(ref.patient_id, ref.split)
        if previous != ref.split:
            raise InputError(f"patient {ref.patient_id} is in both the {previous} and {ref.split} splits")
    return by_patient


def _counts(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder counts; every split with a positive fraction gets a patient when there are enough."""
    names = [s for s in SPLITS if fractions.get(s, 0.0) > 0]
    weights = np.array([fractions[s] for s in names], dtype=float)
    weights /= weights.sum()
    counts = np.floor(weights * n).astype(int)
    for index in np.argsort(-(weights * n - counts), kind="stable")[: n - counts.sum()]:
        counts[index] += 1
    if n >= len(names):
        for index in np.flatnonzero(counts == 0):
            counts[index] += 1
            counts[np.argmax(counts)] -= 1
    return dict(zip(names, counts.tolist(), strict=True))


def assign_splits(
    refs: Sequence[CaseRef], fractions: Mapping[str, float], seed: int = 0, use_dataset_splits: bool = True
) -> dict[str, str]:
    """case id -> split. Patients keep the dataset's own split if it has one (and ``use_dataset_splits``);
    the others are shuffled with ``seed`` (sorted first, so the order of the scan does not matter) and cut
    by ``fractions`` over the splits the dataset does not define itself."""
    unknown = set(fractions) - set(SPLITS)
    if unknown or any(f < 0 for f in fractions.values()) or sum(fractions.values()) <= 0:
        raise InputError(f"split fractions must be non-negative over {SPLITS}, got {dict(fractions)}")
    fixed = _dataset_splits(refs) if use_dataset_splits else {}
    free = sorted({ref.patient_id for ref in refs} - set(fixed))
    open_fractions = {s: f for s, f in fractions.items() if s not in set(fixed.values())}
    if free and not any(f > 0 for f in open_fractions.values()):
        open_fractions = dict(fractions)
    by_patient = dict(fixed)
    if free:
        order = np.random.default_rng(seed).permutation(len(free))
        start = 0
        for split, count in _counts(len(free), open_fractions).items():
            for index in order[start : start + count]:
                by_patient[free[index]] = split
            start += count
    return {ref.case_id: by_patient[ref.patient_id] for ref in refs}
