"""Benchmark: latent diffusion sampling, 2D and 3D (seconds per image or volume, peak memory).

Each case runs in its own process (so its peak resident memory, from ``getrusage``, is its own): a
label-conditioned 2D model at 128x128 (32x32 latents) and a paired or conditioned 3D model at the trained
size, every sampler and step count asked for, batch 1 and ``--batch``, timing the whole call (sampling,
decoding, and for conditioned models the resampling onto and off the model grid). Speed does not depend
on the weights: untrained networks of the default configuration are used unless ``--model`` is given.
Prints a Markdown table.

    .venv/bin/python bench/latent_speed.py --threads 2 --dims 2 --samplers dpm++ ddim --steps 10 25 100
    .venv/bin/python bench/latent_speed.py --threads 2 --dims 3 --shape-3d 128 160 160 --steps 10 25
    .venv/bin/python bench/latent_speed.py --device cuda --dims 2 3 --batches 1 64 --steps 25   # bf16 on GPUs

On a GPU the networks run in bf16 (the models' ``mixed_precision``; ``--float32`` turns it off) and the
table adds the peak GPU memory. ``--strength S`` times sampling from the simulator's image (2D and 3D
label-conditioned models; the simulator's time included).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def _model(dims: int, shape: list[int], conditioned: bool, process: str, device: str):
    """A LatentModel with untrained default networks (the default autoencoder and denoiser)."""
    from EchoSynthLib.data.labels import ClassLayout, schema_named
    from EchoSynthLib.engine.device import pick_device
    from EchoSynthLib.models.autoencoder.config import AutoencoderConfig
    from EchoSynthLib.models.autoencoder.network import build_autoencoder
    from EchoSynthLib.models.latent.config import LatentConfig
    from EchoSynthLib.models.latent.network import Denoiser
    from EchoSynthLib.models.latent.pipeline import LatentModel

    layout = ClassLayout.of(schema_named("echosynth"))
    coder = AutoencoderConfig(spatial_dims=dims, with_labels=not conditioned, classes=layout)
    config = LatentConfig(
        conditioned=conditioned,
        process=process,
        spatial_dims=dims,
        image_shape=tuple(shape),
        classes=layout,
        autoencoder_settings=coder.as_dict(),
    )
    resolved = pick_device(device)
    autoencoder = build_autoencoder(coder).eval().to(resolved)
    return LatentModel(
        config,
        Denoiser(config).eval().to(resolved),
        autoencoder,
        resolved,
        Path("untrained"),
    )


def _one(case: dict) -> dict:
    """Run one timed case (in this process) and return its numbers."""
    import torch

    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map

    if case["threads"]:
        torch.set_num_threads(case["threads"])
    if case["device"] != "cpu":
        torch.cuda.reset_peak_memory_stats()
    if case["model"]:
        from EchoSynthLib.models.latent.pipeline import LatentModel

        model = LatentModel.load(case["model"], case["device"])
    else:
        model = _model(case["dims"], case["shape"], case["conditioned"], case["process"], case["device"])
    view = "3D" if case["dims"] == 3 else "4CH"
    labels = phantom_label_map(
        view, "ED", seed=0, grid=PhantomGrid.for_view(view, size=max(case["shape"]))
    ).labels

    if case["float32"]:
        model.bf16 = False

    def run(n: int) -> None:
        kwargs = {"n": n, "steps": case["steps"], "sampler": case["sampler"], "batch_size": n}
        if model.config.conditioned:
            model.synthesize(labels, strength=case["strength"], **kwargs)
        else:
            model.generate_pairs(**kwargs)
        if model.device.type == "cuda":
            torch.cuda.synchronize()

    run(1)  # warm-up
    timings = []
    for _ in range(case.get("repeats", 1)):  # the median of repeated runs: one batch alone is noisy
        started = time.perf_counter()
        run(case["batch"])
        timings.append((time.perf_counter() - started) / case["batch"])
    seconds = sorted(timings)[len(timings) // 2]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if model.device.type == "cuda" else None
    precision = "bf16" if model.bf16 else "float32"
    return {**case, "seconds": seconds, "peak_mb": peak_mb, "gpu_mb": gpu_mb, "precision": precision}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dims", type=int, nargs="+", default=[2])
    parser.add_argument("--shape-2d", type=int, nargs=2, default=[128, 128])
    parser.add_argument("--shape-3d", type=int, nargs=3, default=[128, 160, 160], help="slices rows cols")
    parser.add_argument("--samplers", nargs="+", default=["dpm++", "ddim"])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25, 100])
    parser.add_argument("--batches", type=int, nargs="+", default=[1])
    parser.add_argument("--paired-3d", action="store_true", help="the 3D case is a paired (DIFF-3) model")
    parser.add_argument("--model", help="a latent model package instead of untrained networks")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--strength", type=float, default=1.0, help="below 1: from the simulator's image")
    parser.add_argument("--float32", action="store_true", help="no bf16 on a GPU")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per case (their median)")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: one case as JSON
    args = parser.parse_args()
    if args.case:
        print(json.dumps(_one(json.loads(args.case))))
        return
    print(f"{platform.processor() or 'cpu'}, {args.threads or 'default'} threads, device {args.device}")
    columns = [
        "model",
        "shape",
        "sampler",
        "steps",
        "strength",
        "batch",
        "precision",
        "s_per_item",
        "peak_RSS_MB",
        "GPU_MB",
    ]
    print("| " + " | ".join(c.replace("_", " ") for c in columns) + " |")
    print("| " + " | ".join("---" for _ in columns) + " |")
    for dims in args.dims:
        shape = args.shape_2d if dims == 2 else args.shape_3d
        conditioned = not (dims == 3 and args.paired_3d)
        for sampler in args.samplers:
            process = "rflow" if sampler == "rflow" else "ddpm"
            for steps in args.steps:
                for batch in args.batches:
                    case = {
                        "dims": dims,
                        "shape": shape,
                        "conditioned": conditioned,
                        "process": process,
                        "sampler": sampler,
                        "steps": steps,
                        "batch": batch,
                        "device": args.device,
                        "threads": args.threads,
                        "model": args.model,
                        "strength": args.strength if conditioned else 1.0,
                        "float32": args.float32,
                        "repeats": args.repeats,
                    }
                    done = subprocess.run(
                        [sys.executable, __file__, "--case", json.dumps(case)], capture_output=True, text=True
                    )
                    if done.returncode:
                        print(f"| failed: {done.stderr.strip().splitlines()[-1]} |")
                        continue
                    r = json.loads(done.stdout.strip().splitlines()[-1])
                    what = f"{dims}D {'label-conditioned' if conditioned else 'paired'}"
                    size = "x".join(map(str, shape))
                    gpu = "" if r["gpu_mb"] is None else f"{r['gpu_mb']:.0f}"
                    numbers = f"{r['precision']} | {r['seconds']:.3f} | {r['peak_mb']:.0f} | {gpu}"
                    row = f"{what} | {size} | {sampler} | {steps} | {r['strength']:g} | {batch} | {numbers}"
                    print(f"| {row} |", flush=True)


if __name__ == "__main__":
    main()
