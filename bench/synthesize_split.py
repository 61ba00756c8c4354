"""Synthesize one image per label map of a cache split with a semantic diffusion model, batched across
maps (``echosynth synthesize`` samples map by map, so 1,600 single-image maps run at batch 1).

Images are written as ``CASE_synth00.nii.gz`` on each case's cache grid, the naming ``echosynth
evaluate --labels`` pairs with the label maps that ``bench/evaluate_speed.py`` exports (labels-SPLIT/).

    python bench/synthesize_split.py --model runs/sdm64/model --data data/camus224-128 --split train \\
        --out out/bench-evaluate/sdm64-train-n1 --steps 25 --batch 16
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--sampler", default="dpm++sde")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (1: off)")
    parser.add_argument("--strength", type=float, default=None,
                        help="below 1: start from the simulator's image of each map (seed k for case k), "
                             "noised this far (SDEdit); default: the model's own")  # fmt: skip
    parser.add_argument("--device", default="auto")
    parser.add_argument("--limit", type=int, help="only the first N cases")
    args = parser.parse_args()

    from tqdm import tqdm

    from EchoSynthLib.cache.store import CacheIndex
    from EchoSynthLib.data.atomic import staged_directory
    from EchoSynthLib.data.io import write_image
    from EchoSynthLib.models.sdm.pipeline import Synthesizer

    synthesizer = Synthesizer.load(args.model, args.device)
    sampling = synthesizer.resolve(
        steps=args.steps, sampler=args.sampler, guidance_scale=args.guidance, strength=args.strength
    )
    cache = CacheIndex.open(args.data)
    entries = cache.cases(args.split)[: args.limit]
    began = time.perf_counter()
    with staged_directory(args.out) as staging, tqdm(total=len(entries), unit="image") as bar:
        for start in range(0, len(entries), args.batch):
            part = entries[start : start + args.batch]
            targets = [synthesizer.prepare(cache.label_map(entry, cache.load(entry)[1])) for entry in part]
            # One seed per image: image k of the split uses seed + k, whatever the batch.
            drawn = synthesizer.draw_maps(targets, [1] * len(part), args.seed + start, sampling, args.batch)
            for entry, (image,) in zip(part, drawn, strict=True):
                write_image(image, staging / f"{entry['case_id']}_synth00.nii.gz")
            bar.update(len(part))
    seconds = time.perf_counter() - began
    print(f"{len(entries)} images in {seconds:.0f} s ({seconds / len(entries):.2f} s per image), {args.out}")


if __name__ == "__main__":
    main()
