"""CAMUS-look 3D volumes from a 3D map (issue 34 section 2): the simulator's volume of a 3D phantom map,
translated azimuth plane by azimuth plane (``translate --slices``) with a 2D model, then the translation's
difference from the simulator smoothed across neighbouring planes (``translate.steady_look`` along the
slices, a Gaussian of N planes; 0: as translated); and the map drawn plane by plane by 2D label-to-image
models (``synthesize --plane volume``, ``--draw``), timed.

For each: the mean absolute difference between neighbouring planes inside the sector (grey levels; the
simulator volume's is the goal's reference), the echo-encoder Fréchet distance of the planes (on the
128x128 grid) to the 200 CAMUS validation images, and the CAMUS segmenter's LV cavity / myocardium Dice on
the planes against the map's planes.

    .venv/bin/python bench/volume_consistency.py --data data/camus224-128 --out runs/volume-consistency
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def neighbour_change(volume: np.ndarray, inside: np.ndarray) -> float:
    """Mean absolute difference (grey levels) between neighbouring planes, where both are in the sector."""
    both = inside[1:] & inside[:-1]
    return float(np.abs(np.diff(volume.astype(np.float32), axis=0))[both].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a camus224 cache at 128 (the reference)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="adversarial-camus128-translate")
    parser.add_argument("--size", type=int, default=96, help="the phantom volume's side (voxels)")
    parser.add_argument("--volumes", type=int, default=2)
    parser.add_argument("--smoothing", type=float, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--draw", nargs="*", default=[], help="models drawn with --plane volume")
    parser.add_argument("--shape", type=int, nargs=3, help="k j i: the phantom cut to this many voxels")
    args = parser.parse_args()

    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
    from EchoSynthLib.data.labels import ECHOSYNTH, ClassLayout, Structure
    from EchoSynthLib.data.planes import slice_of
    from EchoSynthLib.data.volume import Volume
    from EchoSynthLib.evaluation.distribution import frechet_distance
    from EchoSynthLib.evaluation.feature_spaces import echo_space
    from EchoSynthLib.evaluation.image_sets import cache_set, unlabelled_image
    from EchoSynthLib.inference.generators import GeneratorSettings, open_generator
    from EchoSynthLib.metrics.dice import dice_per_structure
    from EchoSynthLib.models.segmenter.network import Segmenter
    from EchoSynthLib.preprocessing.prepare import PrepareSettings
    from EchoSynthLib.sampling.translate import _translated, steady_look
    from EchoSynthLib.simulation import simulate_bmode

    args.out.mkdir(parents=True, exist_ok=True)
    generator = open_generator(GeneratorSettings(args.model, device="cpu"))
    segmenter = Segmenter.load("segmenter-camus", "cpu")
    space = echo_space(device="cpu")
    real, _ = cache_set(f"{args.data}:val", "val")
    real_features = np.asarray(space.embed(real.images), np.float64)
    settings = PrepareSettings(size=(128, 128))
    layout = ClassLayout.of(ECHOSYNTH)
    heart_labels = [Structure.LV_CAVITY.label, Structure.LV_MYOCARDIUM.label]
    rows: dict[str, dict[str, list]] = {}
    for v in range(args.volumes):
        labels = phantom_label_map(
            "3D", ("ED", "ES")[v % 2], seed=v, grid=PhantomGrid.for_view("3D", size=args.size)
        )
        labels = labels.labels
        if args.shape:  # a cubic phantom cut to (k, j, i) about its middle in k and i, from the probe in j
            sides = zip((labels.size[2], labels.size[0]), args.shape[::2], strict=True)
            k0, i0 = [(n - m) // 2 for n, m in sides]
            cut = labels.array[k0 : k0 + args.shape[0], : args.shape[1], i0 : i0 + args.shape[2]]
            labels = Volume(np.ascontiguousarray(cut), labels.spacing, labels.origin, labels.direction)
        began = time.perf_counter()
        simulated = simulate_bmode(labels, v)
        simulate_s = time.perf_counter() - began
        planes = [k for k in range(labels.size[2]) if np.isin(slice_of(labels, k).array, heart_labels).any()]
        sources = [slice_of(simulated, k) for k in planes]
        maps = [generator.prepare(slice_of(labels, k)) for k in planes]
        began = time.perf_counter()
        translated = [_translated(generator, s, m, 100 + v)[0] for s, m in zip(sources, maps, strict=True)]
        translate_s = time.perf_counter() - began
        inside = np.stack([m.array[0] != Structure.BACKGROUND.label for m in maps])
        source_arrays = [s.array[0] for s in sources]
        variants = {"simulator": source_arrays}
        for n in args.smoothing:
            name = "translated" if n == 0 else f"smoothed over {n:g} planes"
            variants[name] = translated if n == 0 else steady_look(source_arrays, translated, n)
        for model in args.draw:
            drawer = open_generator(GeneratorSettings(model, plane="volume", device="cpu"))
            began = time.perf_counter()
            volume = drawer.generate(drawer.prepare(labels), 1, 100 + v)[0].array
            print(f"volume {v}: {model} plane by plane in {time.perf_counter() - began:.1f} s")
            variants[f"{model} plane by plane"] = [volume[k] for k in planes]
        for name, arrays in variants.items():
            stack = np.stack(arrays)
            row = rows.setdefault(name, {"change": [], "features": [], "lv": [], "myo": []})
            row["change"].append(neighbour_change(stack, inside))
            images = [s.with_array(a[None]) for s, a in zip(sources, arrays, strict=True)]
            row["features"].append(
                np.asarray(space.embed(np.stack([unlabelled_image(i, settings) for i in images])))
            )
            for image, truth in zip(
                images[:: max(1, len(images) // 16)], maps[:: max(1, len(images) // 16)], strict=True
            ):
                dice = dice_per_structure(segmenter.segment(image).array, truth.array, layout)
                row["lv"].append(float(dice["lv_cavity"][0]))
                row["myo"].append(float(dice["lv_myocardium"][0]))
        timing = f"simulate {simulate_s:.1f} s, translate {translate_s:.1f} s"
        print(f"volume {v}: {labels.size}, {len(planes)} heart planes, {timing}")
    results = {}
    reference = rows["simulator"]["change"]
    for name, row in rows.items():
        features = np.concatenate(row["features"])
        results[name] = {
            "neighbour_change": float(np.mean(row["change"])),
            "change_vs_simulator": float(np.mean(row["change"]) / np.mean(reference)),
            "frechet_distance": frechet_distance(real_features, features),
            "lv_dice": float(np.nanmean(row["lv"])),
            "myo_dice": float(np.nanmean(row["myo"])),
        }
        print(name, {k: round(x, 3) for k, x in results[name].items()})
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
