"""Do translated cine loops flicker? Stand-in loops: phantom hearts beating ED -> ES -> ED over ``--frames``
frames (the simulator's image of each frame, one speckle seed per loop, in the stand-in scanner's look),
translated with their label maps by each model (``translate_files``: the frames of a loop share one seed),
then held steady over ``--steady`` frames (``steady_look``; 0: as translated). For each: the mean absolute
change between consecutive frames (grey levels, as ``translation.json`` gives it) of the sources and of
the outputs, how far the outputs moved from the translations, and the echo-encoder Fréchet distance of
the outputs to real CAMUS validation images (``--real``, a cache split).

    .venv/bin/python bench/loop_flicker.py --out runs/loop-flicker --real data/camus224-128:val
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np


def loop(view: str, seed: int, frames: int, size: int = 128):
    """(image, label map) per frame of one beating phantom heart in the stand-in scanner's look."""
    import torch

    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
    from EchoSynthLib.anatomy.phantom import render_heart
    from EchoSynthLib.augmentation.scanner_look import STAND_IN
    from EchoSynthLib.simulation import simulate_bmode

    grid = PhantomGrid.for_view(view, size=size)
    phantom = phantom_label_map(view, "ED", seed, grid)
    empty, sector = grid.volume_and_sector()
    out = []
    for k in range(frames):
        share = np.sin(np.pi * k / frames) ** 2  # 0 at ED, 1 at ES half-way, back to ED
        heart = phantom.heart
        beat = replace(
            heart,
            long_axis_shortening=heart.long_axis_shortening * share,
            fractional_shortening=heart.fractional_shortening * share,
            wall_thickening=heart.wall_thickening * share,
            la_growth=heart.la_growth * share,
        ).at_phase("ES")
        labels, _ = render_heart(beat, empty, sector)
        image = simulate_bmode(labels, seed)
        x = torch.from_numpy(image.array.reshape(1, 1, size, size).astype(np.float32) / 127.5 - 1.0)
        inside = torch.from_numpy(labels.array.reshape(1, 1, size, size) != 0)
        looked = STAND_IN(x, inside)[0, 0].numpy()
        grey = np.rint((looked + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
        out.append((image.with_array(grey.reshape(image.array.shape)), labels))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=["adversarial-camus128-translate"])
    parser.add_argument("--loops", type=int, default=4)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steady", type=float, nargs="+", default=[0, 2, 4, 8, float("inf")])
    parser.add_argument("--real", default="data/camus224-128:val", help="real CAMUS images (a cache split)")
    args = parser.parse_args()

    from EchoSynthLib.inference.generators import GeneratorSettings, open_generator
    from EchoSynthLib.sampling.translate import TranslationSource, translate_files

    loops = {f"loop{i}": loop(("4CH", "2CH")[i % 2], 40 + i, args.frames) for i in range(args.loops)}
    sources = [
        TranslationSource(f"{name}_f{k:02d}", ".nii.gz", f"{name} frame {k}", lambda f=frame: f, group=name)
        for name, frames in loops.items()
        for k, frame in enumerate(frames)
    ]
    from EchoSynthLib.data.io import read_image
    from EchoSynthLib.evaluation.distribution import frechet_distance
    from EchoSynthLib.evaluation.downstream import paper_dice
    from EchoSynthLib.evaluation.feature_spaces import echo_space
    from EchoSynthLib.evaluation.image_sets import cache_set
    from EchoSynthLib.models.segmenter.network import Segmenter
    from EchoSynthLib.sampling.translate import steady_look

    segment = Segmenter.load("segmenter-camus", "cpu").segment
    space = echo_space(device="cpu")
    real = space.embed(cache_set(args.real, "val")[0].images)

    def change(video) -> float:
        return float(np.mean([np.abs(b.astype(float) - a).mean() for a, b in itertools.pairwise(video)]))

    def distance(frames) -> float:
        return frechet_distance(real, space.embed(np.stack(frames).astype(np.float32) / 127.5 - 1.0))

    def lv_dice(videos) -> float:
        """The CAMUS segmenter's LV cavity Dice on the frames against the loops' label maps."""
        found, truth = [], []
        for name, frames in videos.items():
            for frame, (image, labels) in zip(frames, loops[name], strict=True):
                found.append(segment(image.with_array(frame.reshape(image.array.shape))).array[0])
                truth.append(labels.array[0])
        return float(np.nanmean(paper_dice(np.stack(found), np.stack(truth))["lv_cavity"]))

    results = {}
    for model in args.models:
        out = args.out / model.replace("/", "_")
        if not out.is_dir():
            translate_files(
                open_generator(GeneratorSettings(model, device="cpu")), sources, out, seed=0, steady=0
            )
        translated = {
            name: [
                read_image(out / f"{name}_f{k:02d}_translated.nii.gz").array[0] for k in range(len(frames))
            ]
            for name, frames in loops.items()
        }
        sourced = {name: [image.array[0] for image, _ in frames] for name, frames in loops.items()}
        rows = {}
        for steady in args.steady:
            held = {
                name: steady_look(sourced[name], translated[name], steady) if steady else translated[name]
                for name in loops
            }
            rows[str(steady)] = {
                "source_change": round(float(np.mean([change(v) for v in sourced.values()])), 2),
                "output_change": round(float(np.mean([change(v) for v in held.values()])), 2),
                "moved_from_translation": round(
                    float(
                        np.mean(
                            [
                                np.abs(h.astype(float) - t).mean()
                                for n in loops
                                for h, t in zip(held[n], translated[n], strict=True)
                            ]
                        )
                    ),
                    2,
                ),
                "echo_frechet_to_camus": round(distance([f for v in held.values() for f in v]), 2),
                "segmenter_lv_dice": round(lv_dice(held), 3),
            }
            print(model, steady, rows[str(steady)])
        rows["source"] = {
            "echo_frechet_to_camus": round(distance([f for v in sourced.values() for f in v]), 2),
            "segmenter_lv_dice": round(lv_dice(sourced), 3),
        }
        results[model] = rows
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
