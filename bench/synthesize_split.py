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

    import torch
    from tqdm import tqdm

    from EchoSynthLib.cache.store import CacheIndex
    from EchoSynthLib.data.atomic import staged_directory
    from EchoSynthLib.data.io import write_image
    from EchoSynthLib.diffusion.samplers import sample
    from EchoSynthLib.models.sdm.pipeline import Synthesizer
    from EchoSynthLib.preprocessing.prepare import image_on_grid
    from EchoSynthLib.sampling.grids import image_back_onto, with_sector
    from EchoSynthLib.simulation import simulate_bmode

    synthesizer = Synthesizer.load(args.model, args.device)
    synthesizer.check_sampling(args.steps, args.guidance, args.strength)
    strength = synthesizer.start_strength(args.strength)
    cache = CacheIndex.open(args.data)
    entries = cache.cases(args.split)[: args.limit]
    began = time.perf_counter()
    with staged_directory(args.out) as staging, tqdm(total=len(entries), unit="image") as bar:
        for start in range(0, len(entries), args.batch):
            part = entries[start : start + args.batch]
            targets, segs, grids, inits = [], [], [], []
            for entry in part:
                _, labels = cache.load(entry)
                target = with_sector(cache.label_map(entry, labels))
                seg, model_grid = synthesizer.conditioning(target)
                targets.append(target)
                segs.append(seg)
                grids.append(model_grid)
                if strength < 1.0:
                    simulated = simulate_bmode(target, args.seed + start + len(inits))
                    on_grid = image_on_grid(simulated, model_grid).reshape(1, 1, *seg.shape[2:])
                    inits.append(torch.from_numpy(on_grid))
            batch = torch.cat(segs).to(synthesizer.device)
            init = torch.cat(inits) if inits else None
            # One seed per image: image k of the split uses seed + k, whatever the batch.
            images = sample(synthesizer.model, batch, synthesizer.diffusion, sampler=args.sampler,
                            steps=args.steps, seed=args.seed + start,
                            guidance_scale=args.guidance, init=init, strength=strength)  # fmt: skip
            for entry, target, grid, image in zip(
                part, targets, grids, images.float().cpu().numpy(), strict=True
            ):
                write_image(
                    image_back_onto(target, image, grid), staging / f"{entry['case_id']}_synth00.nii.gz"
                )
            bar.update(len(part))
    seconds = time.perf_counter() - began
    print(f"{len(entries)} images in {seconds:.0f} s ({seconds / len(entries):.2f} s per image), {args.out}")


if __name__ == "__main__":
    main()
