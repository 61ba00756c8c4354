"""Benchmark: semantic diffusion sampling (seconds per image) and training (iterations per second).

For each size preset, batch size, sampler and step count, one timed run after a warm-up (speed does not
depend on the weights, so an untrained preset network is used unless ``--model`` is given). A run whose
predicted time (from the measured seconds per network evaluation) exceeds ``--budget`` seconds is
reported as skipped, never extrapolated. Prints a Markdown table.

    .venv/bin/python bench/sdm_speed.py --sizes 128 256 --batches 1 16 --steps 10 25 50 100 1000

With ``--model``, also whole ``Synthesizer.synthesize`` calls on a 128x128 phantom map (dpm++sde 25: the
simulator's starting images, sampling and the resampling onto and off the model grid) at the package's
own start strength and from pure noise:

    .venv/bin/python bench/sdm_speed.py --model sdm-camus64 --batches 1 16 --threads 2 --train-iters 0
"""

from __future__ import annotations

import argparse
import platform
import time


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50, 100, 1000])
    parser.add_argument("--samplers", nargs="+", default=["dpm++", "ddim", "ddpm"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", help="a model package (its size is used instead of --sizes)")
    parser.add_argument("--budget", type=float, default=120.0, help="skip runs predicted to take longer (s)")
    parser.add_argument(
        "--train-iters", type=int, default=5, help="timed training iterations per size (0: none)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()

    import torch

    from EchoSynthLib.diffusion.gaussian import GaussianDiffusion
    from EchoSynthLib.diffusion.samplers import denoise
    from EchoSynthLib.engine.device import pick_device
    from EchoSynthLib.models.sdm.config import SDMConfig
    from EchoSynthLib.models.sdm.network import build_sdm
    from EchoSynthLib.models.sdm.pipeline import Synthesizer

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if args.model:
        from EchoSynthLib.store.registry import resolve_model

        loaded = Synthesizer.load(resolve_model(args.model), device)
        networks = [(loaded.config, loaded.model)]
    else:
        networks = []
        for size in args.sizes:
            config = SDMConfig.preset(size)
            networks.append((config, build_sdm(config).to(device).eval()))
    print("| size | params (M) | batch | sampler | steps | s / image | s / batch |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    diffusion = GaussianDiffusion()
    for config, model in networks:
        params = sum(p.numel() for p in model.parameters()) / 1e6
        for batch in args.batches:
            seg = torch.zeros(
                (batch, config.label_channels, config.image_size, config.image_size), device=device
            )
            seg[:, 0] = 1.0
            denoise(model, seg, diffusion, sampler="ddim", steps=2)  # warm-up
            _sync(device)
            began = time.perf_counter()
            denoise(model, seg, diffusion, sampler="ddim", steps=4)
            _sync(device)
            per_evaluation = (time.perf_counter() - began) / 4
            for sampler in args.samplers:
                for steps in args.steps:
                    row = f"| {config.image_size} | {params:.1f} | {batch} | {sampler} | {steps} |"
                    predicted = per_evaluation * steps
                    if predicted > args.budget:
                        print(f"{row} skipped (predicted {predicted:.0f} s > budget) | |")
                        continue
                    began = time.perf_counter()
                    denoise(model, seg, diffusion, sampler=sampler, steps=steps, seed=0)
                    _sync(device)
                    seconds = time.perf_counter() - began
                    print(f"{row} {seconds / batch:.3f} | {seconds:.2f} |", flush=True)
        if args.train_iters:
            _train_speed(config, device, args.train_iters, diffusion)
    if args.model:
        _whole_calls(loaded, args.batches)


def _whole_calls(loaded, batches: list[int]) -> None:
    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map

    labels = phantom_label_map("4CH", "ED", seed=0, grid=PhantomGrid.for_view("4CH", size=128)).labels
    print("\n| whole call, 128x128 map | batch | s / image |")
    print("| --- | --- | --- |")
    loaded.synthesize(labels, n=1, steps=2)  # warm-up
    for strength in sorted({loaded.resolve().strength, 1.0}):
        for batch in batches:
            began = time.perf_counter()
            loaded.synthesize(labels, n=batch, batch_size=batch, strength=strength)
            _sync(loaded.device)
            seconds = (time.perf_counter() - began) / batch
            print(f"| start strength {strength:g} | {batch} | {seconds:.3f} |", flush=True)


def _train_speed(config, device, iterations: int, diffusion) -> None:
    import torch

    from EchoSynthLib.models.sdm.network import build_sdm

    model = build_sdm(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    shape = (config.batch_size, 1, config.image_size, config.image_size)
    images = torch.rand(shape, device=device) * 2 - 1
    seg = torch.zeros((config.batch_size, config.label_channels, *shape[2:]), device=device)
    seg[:, 0] = 1.0
    use_bf16 = device.type == "cuda" and config.mixed_precision

    def step() -> None:
        t = torch.randint(0, config.timesteps, (shape[0],), device=device)
        noise = torch.randn(shape, device=device)
        x_t = diffusion.q_sample(images, t, noise)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            output = model(x_t, t, seg)
        loss = diffusion.training_losses(output.float(), images, x_t, t, noise, config.vlb_weight)[
            "loss"
        ].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    _sync(device)
    began = time.perf_counter()
    for _ in range(iterations):
        step()
    _sync(device)
    rate = iterations / (time.perf_counter() - began)
    precision = "bf16" if use_bf16 else "fp32"
    print(f"\ntraining {config.image_size}: {rate:.2f} it/s at batch {config.batch_size} ({precision})\n")


if __name__ == "__main__":
    main()
