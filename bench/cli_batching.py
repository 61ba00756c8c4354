"""Per-image time of ``echosynth synthesize`` over many maps against ``bench/latent_speed.py`` at the same
batch size (issue 30: the command batches images across maps, so it should be within 1.3x of the model's
own speed). The maps are the label maps of a cache split (e.g. CAMUS validation, 200 maps), written as
files first; the command's wall time (model loading, reading and writing included) is divided by them.

    .venv/bin/python bench/cli_batching.py --data data/camus224-128:val --model latent-camus128 --threads 2

Stop other work on the machine first (a training relay: ``kill -STOP``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _write_maps(spec: str, folder: Path, count: int | None) -> int:
    from EchoSynthLib.cache.store import CacheIndex
    from EchoSynthLib.data.io import write_label_map
    from EchoSynthLib.data.volume import Volume

    path, _, split = spec.partition(":")
    cache = CacheIndex.open(path)
    entries = cache.cases(split or "val")[:count]
    layout = cache.manifest.layout
    for entry in entries:
        labels = cache.load(entry)[1]
        write_label_map(Volume.from_2d(layout.to_canonical(labels)), folder / f"{entry['case_id']}.nii.gz")
    return len(entries)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="CACHE:split whose label maps are synthesized")
    parser.add_argument("--model", default="latent-camus128")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--maps", type=int, default=None, help="the first N maps only")
    parser.add_argument("--batch", type=int, default=16, help="the bench's batch (the command's: 16)")
    parser.add_argument("--strength", default="0.5", help="the bench's start strength (the package's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="echosynth-cli-batching-") as scratch:
        maps = Path(scratch) / "maps"
        count = _write_maps(args.data, maps, args.maps)
        command = [sys.executable, "-m", "EchoSynthLib.cli.main", "synthesize", "--model", args.model]
        command += ["--labels", str(maps), "--out", str(Path(scratch) / "out")]
        command += ["--threads", str(args.threads)]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cli = (time.perf_counter() - started) / count
    bench = [sys.executable, str(Path(__file__).with_name("latent_speed.py")), "--model", args.model]
    bench += ["--threads", str(args.threads), "--dims", "2", "--batches", str(args.batch)]
    from EchoSynthLib.models.latent.pipeline import LatentModel

    sampler = LatentModel.load(args.model, "cpu").sampler_for(None)  # what the command samples with
    bench += ["--strength", args.strength, "--steps", "25", "--samplers", sampler, "--repeats", "3"]
    table = subprocess.run(bench, check=True, capture_output=True, text=True, env=os.environ).stdout
    rows = [r for r in table.splitlines() if r.startswith("|") and re.search(rf"\|\s*{args.batch}\s*\|", r)]
    print(table)
    print(f"echosynth synthesize over {count} maps ({args.threads} threads): {cli:.3f} s per image")
    print("bench row(s) at the same batch size:", *rows, sep="\n")


if __name__ == "__main__":
    main()
