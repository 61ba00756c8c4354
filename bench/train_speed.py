"""Training speed of the SDM trainer through the real command, in one process or under torchrun.

    python bench/train_speed.py --data data/camus224-64 --steps 12                 # one process
    python bench/train_speed.py --data data/camus224-64 --steps 12 --processes 2   # torchrun, gloo/NCCL

Reports seconds per step (from the run's log.jsonl, leaving out the first logged window, which holds
start-up) and the peak resident memory of the largest process. Each run starts in a fresh folder.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def run(data: Path, steps: int, processes: int, batch: int, device: str, threads: int | None) -> dict:
    """One training run; its speed and memory."""
    out = Path(tempfile.mkdtemp(prefix="train-speed-")) / "run"
    settings = [f"--set=max_steps={steps}", f"--set=batch_size={batch}", "--set=log_every=2"]
    settings += ["--set=val_every=100000", "--set=sample_every=100000", "--set=checkpoint_every=100000"]
    command = ["-m", "EchoSynthLib.cli.main", "train", "sdm", "--data", str(data), "--out", str(out)]
    command += ["--device", device, *settings]
    if processes > 1:
        command = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *command]
    env = None
    if threads is not None:
        import os

        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, *command], check=True, capture_output=True, env=env)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    timed = log[1:] or log
    seconds = sum(r["seconds"] for r in timed) / (2 * len(timed))  # log_every=2
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "processes": processes,
        "batch": batch,
        "seconds_per_step": round(seconds, 3),
        "peak_mb": int(peak),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="a 2D training cache")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16, help="global batch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS per process")
    args = parser.parse_args()
    print(json.dumps(run(args.data, args.steps, args.processes, args.batch, args.device, args.threads)))


if __name__ == "__main__":
    main()
