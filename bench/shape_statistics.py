"""Shape statistics of CAMUS's label maps and of the phantom generator's (issue 34 §3): how far is each
set's anatomy from CAMUS val's?

    python bench/shape_statistics.py --data data/camus224-128 --phantoms 200 --out runs/shape-stats.json
    python bench/shape_statistics.py --shape-model runs/shape128/model 400 --out runs/shape-stats-model.json

Computes ``EchoSynthLib.evaluation.shapes`` statistics of the CAMUS val and train maps (on the cache's
grid) and of ``--phantoms`` phantom maps (views 4CH/2CH, phases ED/ES, seeds 0, 1, ...), prints a markdown
table (median and 5-95 % range of each statistic per set, of the scale-free wall thickness / LV length,
and of the area-length EF of the ED/ES pairs of one patient and view, or one phantom seed and view) and
the ``shape_distance`` of train and of the phantoms to val, and writes everything, per map too, to
``--out``. camus224 lost the physical pixel size (a 224-grid pixel counts as 1 mm): compare its mm
statistics with the phantoms' by their shape and spread, not their scale.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.cache.store import CacheIndex
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.evaluation.shapes import (
    SHAPE_STATISTICS,
    area_length_volume,
    shape_distance,
    shape_statistics,
)

EF = "ejection_fraction"
# Scale-free: camus224 lost the physical pixel size (its pixels count as 1 mm on the 224 grid), so its mm
# statistics are not comparable with the phantoms' in absolute terms; ratios are.
WALL_RATIO = "thickness_length_ratio"
THICKNESS, LENGTH = SHAPE_STATISTICS.index("myocardial_thickness_mm"), SHAPE_STATISTICS.index("lv_length_mm")


def camus_maps(cache: CacheIndex, split: str) -> dict[str, Volume]:
    """The split's canonical label maps by case id ("patient0401_2CH_ED")."""
    maps = {}
    for entry in cache.cases(split):
        _, labels = cache.load(entry)
        maps[entry["case_id"]] = cache.label_map(entry, labels)
    return maps


def phantom_maps(count: int, size: int) -> dict[str, Volume]:
    """``count`` phantom maps, named like CAMUS cases ("phantom0003_4CH_ES"): seeds 0, 1, ... each in both
    views and both phases."""
    maps = {}
    for index in range(count):
        seed, view, phase = index // 4, ("4CH", "2CH")[index // 2 % 2], ("ED", "ES")[index % 2]
        grid = PhantomGrid.for_view(view, size=size)
        maps[f"phantom{seed:04d}_{view}_{phase}"] = phantom_label_map(view, phase, seed, grid=grid).labels
    return maps


def augmented(maps: dict[str, Volume], count: int) -> dict[str, Volume]:
    """The first ``count`` maps through the Echo-from-noise warp (``augment``'s), the ED and ES maps of one
    case and view with the same warp (the same seed), so that their ejection fraction is comparable."""
    from EchoSynthLib.augmentation import augment_label_map

    names = list(maps)[:count]
    prefixes = sorted({name[:-3] for name in names})
    return {name: augment_label_map(maps[name], prefixes.index(name[:-3])) for name in names}


def shape_model_maps(model: str, count: int) -> dict[str, Volume]:
    """``count`` maps of a shape model, named like CAMUS cases ("heart0003_ED"): cases 2h and 2h + 1 are
    the ED and ES of heart h."""
    from EchoSynthLib.models.shape_model.pipeline import ShapeModel

    maps = ShapeModel.load(model, "cpu").generate_maps(count, seed=0)
    return {f"heart{k // 2:04d}_{('ED', 'ES')[k % 2]}": labels for k, labels in enumerate(maps)}


def measure(maps: dict[str, Volume]) -> dict[str, Any]:
    """Per map statistics, the (N, S) table and the EF of every ED/ES pair of one case prefix and view."""
    per_map = {name: shape_statistics(labels) for name, labels in maps.items()}
    fractions = {}
    for name, values in per_map.items():
        if name.endswith("_ED") and name[:-3] + "_ES" in per_map:
            diastole = area_length_volume(values)
            fractions[name[:-3]] = (diastole - area_length_volume(per_map[name[:-3] + "_ES"])) / diastole
    table = np.array([[values[s] for s in SHAPE_STATISTICS] for values in per_map.values()], float)
    return {"per_map": per_map, "table": table.reshape(-1, len(SHAPE_STATISTICS)), EF: fractions}


def summary(values: np.ndarray) -> dict[str, float]:
    """Median, 5th and 95th percentiles and count of the finite values."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return {"median": math.nan, "p5": math.nan, "p95": math.nan, "n": 0}
    p5, median, p95 = np.percentile(values, [5, 50, 95])
    return {"median": float(median), "p5": float(p5), "p95": float(p95), "n": len(values)}


def cell(stats: dict[str, float]) -> str:
    digits = 0 if abs(stats["median"]) >= 100 else 1 if abs(stats["median"]) >= 5 else 2
    return f"{stats['median']:.{digits}f} [{stats['p5']:.{digits}f}, {stats['p95']:.{digits}f}]"


def plain(value: Any) -> Any:
    """``value`` for strict JSON: NaN (a map without a structure) as null."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/camus224-128"), help="a training cache")
    parser.add_argument("--phantoms", type=int, default=200, help="phantom maps (4 per seed)")
    parser.add_argument("--phantom-size", type=int, default=256, help="phantom grid side in pixels")
    parser.add_argument("--out", type=Path, default=Path("runs/shape-stats.json"))
    parser.add_argument(
        "--augmented", type=int, default=0, help="also N phantom and N CAMUS training maps warped (augment)"
    )
    parser.add_argument(
        "--shape-model", nargs=2, metavar=("MODEL", "N"), help="also N maps of a shape model"
    )
    args = parser.parse_args()

    began = time.perf_counter()
    cache = CacheIndex.open(args.data)
    train, phantoms = camus_maps(cache, "train"), phantom_maps(args.phantoms, args.phantom_size)
    sets = {
        "camus_val": measure(camus_maps(cache, "val")),
        "camus_train": measure(train),
        "phantoms": measure(phantoms),
    }
    if args.shape_model:
        sets["shape_model"] = measure(shape_model_maps(args.shape_model[0], int(args.shape_model[1])))
    if args.augmented:
        sets["phantoms_augmented"] = measure(augmented(phantoms, args.augmented))
        sets["camus_train_augmented"] = measure(augmented(train, args.augmented))
    summaries = {
        name: {
            **{s: summary(result["table"][:, i]) for i, s in enumerate(SHAPE_STATISTICS)},
            WALL_RATIO: summary(result["table"][:, THICKNESS] / result["table"][:, LENGTH]),
            EF: summary(np.array(list(result[EF].values()), float)),
        }
        for name, result in sets.items()
    }
    reference = sets["camus_val"]["table"]
    distances = {
        f"{name}_vs_camus_val": shape_distance(result["table"], reference)
        for name, result in sets.items()
        if name != "camus_val"
    }
    seconds = time.perf_counter() - began

    names = list(sets)
    counts = ", ".join(f"{name} {len(result['per_map'])} maps" for name, result in sets.items())
    print(f"Shape statistics, median [5 %, 95 %] ({counts}; {seconds:.0f} s)\n")
    print("| statistic | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for statistic in (*SHAPE_STATISTICS, WALL_RATIO, EF):
        print(f"| {statistic} | " + " | ".join(cell(summaries[n][statistic]) for n in names) + " |")
    print("\nshape_distance to camus_val (Wasserstein / val's standard deviation)\n")
    print("| statistic | " + " | ".join(distances) + " |")
    print("|---" * (len(distances) + 1) + "|")
    for statistic in (*SHAPE_STATISTICS, "mean"):
        print(f"| {statistic} | " + " | ".join(f"{d[statistic]:.2f}" for d in distances.values()) + " |")

    document = {
        "data": str(args.data),
        "phantoms": args.phantoms,
        "phantom_size": args.phantom_size,
        "statistics": list(SHAPE_STATISTICS),
        "seconds": seconds,
        "summaries": summaries,
        "distances": distances,
        "per_map": {name: result["per_map"] for name, result in sets.items()},
        "ejection_fractions": {name: result[EF] for name, result in sets.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(plain(document), indent=1, allow_nan=False))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
