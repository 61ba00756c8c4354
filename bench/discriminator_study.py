"""Benchmark: how fast a discriminator design learns real from generated pairs, per reverse step.

Trains only a discriminator, from scratch, against a fixed generator (the one in a labels-guided
adversarial run's checkpoint or package) on batches of a cache, with the trainer's draws and losses
(non-saturating, optional R1 every 10 steps), and prints its mean loss on real + generated pairs for each
reverse step t over each quarter of the run. 2 ln 2 = 1.386 is chance: a design that cannot tell the pairs
apart stays there. ``encoder`` is the model's discriminator (MONAI ``DiffusionModelEncoder``: step
embedding, residual blocks, one score); ``patch`` is the first design (MONAI ``PatchDiscriminator``,
instance norm, t / T as a constant channel), kept here to compare.

    .venv/bin/python bench/discriminator_study.py --generator runs/adv64/checkpoint \\
        --data data/camus224-64 --design encoder patch --steps 120 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

CHANCE = 2 * 0.6931


def _patch_design(config):
    """The first design, for comparison: patch logits on the pair, the map and t / T as a channel."""
    import torch
    from monai.networks.nets import PatchDiscriminator

    class Patch(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.steps = config.steps
            self.patches = PatchDiscriminator(
                spatial_dims=2, channels=32, in_channels=3 + len(config.classes), num_layers_d=3,
                norm="INSTANCE",
            )  # fmt: skip

        def forward(self, earlier, x_t, t, guides, seg):
            time = (t.to(x_t.dtype) / self.steps).view(-1, 1, 1, 1).expand_as(x_t)
            return self.patches(torch.cat([earlier, x_t, time, seg, guides], dim=1))[-1]

    return Patch()


def _generator(folder: Path):
    """The generator of a checkpoint or package folder and its settings (any discriminator settings of
    an older run dropped: only the generator is used)."""
    from safetensors.torch import load_file

    from EchoSynthLib.models.adversarial.config import AdversarialConfig
    from EchoSynthLib.models.adversarial.network import GanGenerator

    own = folder / "config.json"
    settings = json.loads((own if own.exists() else folder.parent / "config.json").read_text())
    settings = settings.get("settings", settings)
    settings = {k: v for k, v in settings.items() if not k.startswith("discriminator_")}
    config = AdversarialConfig.from_dict(settings)
    if config.guide != "labels":
        raise SystemExit(f"{folder}: a labels-guided generator is needed, this one is '{config.guide}'")
    generator = GanGenerator(config)
    generator.load_state_dict(load_file(str(folder / "model.safetensors")))
    return config, generator.eval()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generator", type=Path, required=True, help="checkpoint or package folder")
    parser.add_argument("--data", required=True)
    parser.add_argument("--design", nargs="+", default=["encoder", "patch"], choices=["encoder", "patch"])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--r1-gamma", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    from EchoSynthLib.cache.dataset import CachedPairs
    from EchoSynthLib.models.adversarial.network import Discriminator
    from EchoSynthLib.models.adversarial.trainer import build_process

    torch.set_num_threads(args.threads)
    config, generator = _generator(args.generator)
    process = build_process(config)
    pairs = CachedPairs(args.data, "train", one_hot=True)
    size, batch, quarter = config.image_size, config.batch_size, max(1, args.steps // 4)
    print(f"generator {args.generator}, {args.steps} steps, lr {args.lr}, R1 gamma {args.r1_gamma}")
    print("| design | steps | " + " | ".join(f"loss at t={t}" for t in range(config.steps)) + " | seconds |")
    print("| --- " * (config.steps + 3) + "|")
    for design in args.design:
        torch.manual_seed(0)
        critic = Discriminator(config) if design == "encoder" else _patch_design(config)
        optimizer = torch.optim.Adam(critic.parameters(), lr=args.lr, betas=(0.5, 0.9))
        draws = torch.Generator().manual_seed(1)  # the same batches and noises for every design
        guides = torch.zeros(batch, 0, size, size)
        per_t = [[0.0, 0] for _ in range(config.steps)]
        began = time.perf_counter()
        for step in range(args.steps):
            items = [pairs[i] for i in torch.randint(0, len(pairs), (batch,), generator=draws).tolist()]
            x0 = torch.stack([x["image"] for x in items]).float()
            seg = torch.stack([x["labels"] for x in items]).float()
            t = torch.randint(0, config.steps, (batch,), generator=draws)
            noise, step_noise, posterior_noise = torch.randn((3, *x0.shape), generator=draws)
            z = torch.randn((batch, config.noise_channels, size, size), generator=draws)
            earlier, x_t = process.training_pair(x0, t, noise, step_noise)
            with torch.no_grad():
                fake = process.posterior(generator(x_t, t, z, guides, seg), x_t, t, posterior_noise)
            regularise = args.r1_gamma > 0 and step % 10 == 0
            real = earlier.requires_grad_(regularise)
            twice = [torch.cat([x, x]) for x in (x_t, t, guides, seg)]
            scores = critic(torch.cat([real, fake]), *twice).flatten(1).mean(1)
            real_scores, fake_scores = scores.chunk(2)
            each = F.softplus(-real_scores) + F.softplus(fake_scores)
            loss = each.mean()
            if regularise:
                (gradient,) = torch.autograd.grad(real_scores.sum(), real, create_graph=True)
                loss = loss + 0.5 * args.r1_gamma * gradient.pow(2).flatten(1).sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for j in range(config.steps):
                per_t[j][0] += float(each.detach()[t == j].sum())
                per_t[j][1] += int((t == j).sum())
            if (step + 1) % quarter == 0:
                means = [f"{total / max(count, 1):.3f}" for total, count in per_t]
                print(f"| {design} | {step + 1 - quarter + 1}-{step + 1} | " + " | ".join(means)
                      + f" | {time.perf_counter() - began:.0f} |", flush=True)  # fmt: skip
                per_t = [[0.0, 0] for _ in range(config.steps)]
    print(f"(chance: {CHANCE:.3f})")


if __name__ == "__main__":
    main()
