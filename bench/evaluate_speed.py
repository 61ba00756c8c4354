"""A generator (the training-free simulator by default, or a model) evaluated on a cache's validation
split, and how long ``evaluate`` takes.

    python bench/evaluate_speed.py --data data/camus224-128 --maps val --n 10      # 2,000 images: timing
    python bench/evaluate_speed.py --data data/camus224-128 --maps train --n 1 --downstream --steps 300
    python bench/evaluate_speed.py --data data/camus224-128 --maps val --n 1 --model runs/latent128/model \
        --name latent128 --segmenter segmenter-camus

Writes the label maps of the ``--maps`` split (on each case's cache grid) to OUT/labels-SPLIT, makes
``--n`` images per map with ``echosynth synthesize --model MODEL`` (``--sample-steps``, ``--sampler``),
then times ``echosynth evaluate`` of them against the ``--split`` split (default val). For the downstream
protocol make the images from the training maps: the test split's own maps would leak its anatomy into
training. Prints the command lines, the seconds and the main numbers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def export_labels(cache_path: Path, split: str, out: Path) -> int:
    """The split's label maps as canonical NIfTI files on their cache grid; the number written."""
    from EchoSynthLib.cache.store import CacheIndex
    from EchoSynthLib.data.io import write_label_map

    cache = CacheIndex.open(cache_path)
    out.mkdir(parents=True, exist_ok=True)
    for entry in cache.cases(split):
        _, labels = cache.load(entry)
        write_label_map(cache.label_map(entry, labels), out / f"{entry['case_id']}.nii.gz")
    return len(cache.cases(split))


def echosynth(*args: str) -> float:
    """Run ``echosynth ARGS`` (this interpreter), failing loudly; the seconds it took."""
    command = [sys.executable, "-m", "EchoSynthLib.cli.main", *args]
    print("$ echosynth " + " ".join(args), flush=True)
    began = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="val", help="the real split to compare with (and test on)")
    parser.add_argument("--maps", default="val", help="the split whose label maps are simulated")
    parser.add_argument("--n", type=int, default=10, help="simulated images per label map")
    parser.add_argument("--out", type=Path, default=Path("out/bench-evaluate"))
    parser.add_argument("--downstream", action="store_true")
    parser.add_argument("--steps", type=int, default=300, help="downstream steps per segmenter")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--segmenter", help="segmenter package for adherence")
    parser.add_argument("--model", default="simulator", help="the generator (default: the simulator)")
    parser.add_argument("--name", default="simulated", help="names the image folder and the report")
    parser.add_argument("--sampler", help="sampler of a diffusion model (default: the model's)")
    parser.add_argument("--sample-steps", type=int, default=25, help="sampler steps of a diffusion model")
    args = parser.parse_args()
    labels, simulated = args.out / f"labels-{args.maps}", args.out / f"{args.name}-{args.maps}-n{args.n}"
    maps = export_labels(args.data, args.maps, labels)
    if not simulated.is_dir():
        sampling = [] if args.model == "simulator" else ["--steps", str(args.sample_steps)]
        sampling += ["--sampler", args.sampler] if args.sampler else []
        seconds = echosynth(
            "synthesize",
            "--model",
            args.model,
            "--labels",
            str(labels),
            "--out",
            str(simulated),
            "--n",
            str(args.n),
            *sampling,
        )
        print(f"synthesize: {seconds:.1f} s")
    prefix = "report" if args.name == "simulated" else f"report-{args.name}"
    report = args.out / (f"{prefix}-{args.maps}-n{args.n}" + ("-downstream" if args.downstream else ""))
    command = [
        "evaluate",
        "--real",
        f"{args.data}:{args.split}",
        "--synthetic",
        str(simulated),
        "--labels",
        str(labels),
        "--out",
        str(report),
    ]
    if args.segmenter:
        command += ["--segmenter", args.segmenter]
    if args.downstream:
        command += ["--downstream", "--downstream-steps", str(args.steps), "--seeds", *args.seeds.split(",")]
    seconds = echosynth(*command)
    result = json.loads((report / "report.json").read_text())
    echo = result["feature_spaces"]["echo"]["synthetic_vs_real"]["2d"]
    print(
        json.dumps(
            {
                "maps": maps,
                "images": result["sets"]["synthetic"]["images"],
                "seconds": round(seconds, 1),
                "stages": result["seconds"],
                "echo": echo,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
