"""Benchmark: 4-step adversarial diffusion synthesis, seconds per 2D image on this machine.

Times ``AdversarialModel.synthesize`` whole (resampling the map onto the model grid, the T generator
steps, and the image back onto the map's grid) for a phantom A4C map, batch 1 (one image per call) and
``--batch`` images per call, after one warm-up call. Speed does not depend on the weights: an untrained
generator of the default network at ``--size`` is used unless ``--model`` is given. Prints a Markdown row
per case. Goal (issue 15): a 128x128 image in under 0.3 s on 2 CPU threads. ``--channels`` and
``--no-attention`` time a smaller generator (the network settings a CPU model would train with);
``--strength`` runs fewer steps from the simulator's image (default: the model's own start strength; the
simulator's image of the map is part of the timed call). A translator (guide labels+source) translates the
simulator's image of the map (made once, outside the timed calls).

    .venv/bin/python bench/adversarial_speed.py --threads 2 --size 64 128
    .venv/bin/python bench/adversarial_speed.py --threads 2 --size 128 --channels 16 32 64 --no-attention
    .venv/bin/python bench/adversarial_speed.py --threads 2 --model adversarial-camus64 --strength 1 0.25
    .venv/bin/python bench/adversarial_speed.py --threads 2 --model adversarial-camus128-translate
    .venv/bin/python bench/adversarial_speed.py --threads 2 --size 224 --steps 1 --fold 1 2 4 --guide labels
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path


def _model(size: int, guide: str, device: str, network: dict):
    from EchoSynthLib.data.labels import ClassLayout, schema_named
    from EchoSynthLib.engine.device import pick_device
    from EchoSynthLib.models.adversarial.config import AdversarialConfig
    from EchoSynthLib.models.adversarial.network import GanGenerator
    from EchoSynthLib.models.adversarial.pipeline import AdversarialModel
    from EchoSynthLib.models.adversarial.trainer import build_process

    config = AdversarialConfig(
        image_size=size, guide=guide, classes=ClassLayout.of(schema_named("echosynth")), **network
    )
    resolved = pick_device(device)
    generator = GanGenerator(config).eval().to(resolved)
    return AdversarialModel(config, generator, build_process(config), resolved, Path("untrained"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, nargs="+", default=[128])
    parser.add_argument("--guide", default="labels")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", help="a trained package instead of untrained default networks")
    parser.add_argument("--channels", type=int, nargs="+", help="generator channels per level")
    parser.add_argument("--no-attention", action="store_true", help="no attention at any level")
    parser.add_argument("--strength", type=float, nargs="+", default=[None], help="start strengths to time")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fold", type=int, nargs="+", default=[1], help="U-Net folds to time (issue 34)")
    parser.add_argument("--steps", type=int, help="generator steps (default: the network's 4)")
    args = parser.parse_args()

    import torch

    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
    from EchoSynthLib.diffusion.samplers import steps_from
    from EchoSynthLib.models.adversarial.config import SOURCE_GUIDE
    from EchoSynthLib.models.adversarial.pipeline import AdversarialModel
    from EchoSynthLib.simulation import simulate_bmode
    from EchoSynthLib.store.registry import resolve_model

    torch.set_num_threads(args.threads)
    labels = phantom_label_map("4CH", "ED", seed=0, grid=PhantomGrid.for_view("4CH", size=128)).labels
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads")
    network = {"channels": tuple(args.channels)} if args.channels else {}
    if args.no_attention or args.channels:
        levels = len(network.get("channels", (0, 0, 0)))
        network["attention_levels"] = (
            (False,) * levels if args.no_attention else (False,) * (levels - 1) + (True,)
        )
    if args.channels:
        network["norm_groups"] = min(32, min(args.channels))
        network["num_head_channels"] = min(32, args.channels[-1])
    if args.steps:
        network["steps"] = args.steps
    print("| size | guide | generator channels (attention) | fold | steps | images per call | s per image |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    cases = [(size, fold) for size in args.size for fold in ([1] if args.model else args.fold)]
    for size, fold in cases:
        model = (
            AdversarialModel.load(resolve_model(args.model), args.device)
            if args.model
            else _model(size, args.guide, args.device, network | {"fold": fold})
        )
        config = model.config
        source = {"source": simulate_bmode(labels, 1)} if config.guide == SOURCE_GUIDE else {}
        shape = f"{list(config.channels)} ({', '.join('y' if a else 'n' for a in config.attention_levels)})"
        for strength in args.strength:
            steps = steps_from(config.steps, model.resolve(strength=strength).strength)
            with torch.inference_mode():
                model.synthesize(labels, n=1, strength=strength, **source)  # warm-up
                for count in (1, args.batch):
                    began = time.perf_counter()
                    for repeat in range(args.repeats):
                        model.synthesize(
                            labels, n=count, seed=repeat, batch_size=count, strength=strength, **source
                        )
                    seconds = (time.perf_counter() - began) / (args.repeats * count)
                    row = (
                        f"{config.image_size} | {config.guide} | {shape} | {config.fold} | {steps} | "
                        f"{count} | {seconds:.3f}"
                    )
                    print(f"| {row} |")


if __name__ == "__main__":
    main()
