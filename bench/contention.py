"""Speed of ``echosynth synthesize`` when the CPU is shared (issue 30): per-image time of each shipped model
alone, next to a 2-thread PyTorch training run (``echosynth train sdm --threads 2``), and two synthesize
runs started together against one after the other; all as ratios measured in one run of this script.

Each measurement is a fresh ``echosynth synthesize`` process over the same phantom maps (wall time of the
whole command, model loading included). ``--variants`` says what runs:

- ``default``: this checkout's command with its default thread policy (``EchoSynthLib.cpu_threads``);
- ``threads=N``: this checkout with ``--threads N``;
- ``baseline=PATH``: the command of another checkout of EchoSynth at PATH (e.g. ``git worktree add
  /tmp/before fe83abb``), to compare with the code before a change.

    .venv/bin/python bench/contention.py --models latent-camus128 adversarial-camus64 sdm-camus64
    .venv/bin/python bench/contention.py --variants baseline=/tmp/before default threads=2

The training run next to it is the baseline checkout's when one is given (a PyTorch process that knows
nothing of the thread policy), else this checkout's on 2 threads.

Stop other work on the machine first (a training relay: ``kill -STOP``); the script starts its own load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _trainer(root: Path, tree: str | None) -> tuple[list[str], dict[str, str]]:
    """A real training run next to the user's job: ``echosynth train sdm`` on 2 threads over a small phantom
    cache (made here), long enough to outlast every measurement; killed when done. With ``tree`` (a
    baseline checkout) it is that checkout's: a PyTorch process with torch's own threads (one per core) and
    OpenMP's default wait, as a training run that knows nothing of EchoSynth's policy."""
    from EchoSynthLib.cache.store import build_cache
    from EchoSynthLib.datasets import scan_dataset
    from EchoSynthLib.preprocessing.prepare import PrepareSettings
    from EchoSynthLib.simulation.dataset import write_phantom_dataset

    write_phantom_dataset(root / "phantoms", range(4), size=64)
    build_cache(scan_dataset("folder", root / "phantoms"), root / "cache", PrepareSettings(size=(64, 64)))
    command = [sys.executable, "-m", "EchoSynthLib.cli.main", "train", "sdm", "--data", str(root / "cache")]
    command += ["--out", str(root / "run"), "--device", "cpu", "--set", "max_steps=1000000"]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    if tree is None:
        return [*command, "--threads", "2"], env
    return command, {**env, "PYTHONPATH": str(Path(tree).resolve())}


def _maps(folder: Path, count: int) -> Path:
    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
    from EchoSynthLib.data.io import write_label_map

    views = ("4CH", "2CH")
    for index in range(count):
        view, phase = views[index % 2], ("ED", "ES")[(index // 2) % 2]
        grid = PhantomGrid.for_view(view, size=128)
        labels = phantom_label_map(view, phase, seed=index, grid=grid).labels
        write_label_map(labels, folder / f"m{index:03d}.nii.gz")
    return folder


def _command(model: str, maps: Path, out: Path, variant: str) -> tuple[list[str], dict[str, str]]:
    """The synthesize command of ``variant`` and its environment (no thread variables of this shell)."""
    unset = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "ECHOSYNTH_THREADS", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    command = [sys.executable, "-m", "EchoSynthLib.cli.main", "synthesize", "--model", model]
    command += ["--labels", str(maps), "--out", str(out), "--device", "cpu"]
    name, _, value = variant.partition("=")
    if name == "threads":
        command += ["--threads", value]
    elif name == "baseline":
        env["PYTHONPATH"] = str(Path(value).resolve())  # its EchoSynthLib first
    elif name != "default":
        raise SystemExit(f"unknown variant {variant!r} (default, threads=N, baseline=PATH)")
    return command, env


def _timed(commands: list[tuple[list[str], dict[str, str]]]) -> list[float]:
    """Start the commands together; each one's wall time."""
    started = time.perf_counter()
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for command, env in commands
    ]
    times = []
    for process in processes:
        _, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(err.decode()[-2000:])
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", default=["latent-camus128", "adversarial-camus64", "sdm-camus64"]
    )
    parser.add_argument("--variants", nargs="+", default=["default"], help="default, threads=N, baseline=DIR")
    parser.add_argument("--maps", type=int, default=12, help="128x128 phantom maps per run")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; {args.maps} maps of 128x128 per run; seconds per image (wall / maps)")
    print(
        "| model | variant | alone | next to 2-thread training | ratio | two runs together "
        "| one after the other | ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="echosynth-contention-") as scratch:
        root = Path(scratch)
        maps = _maps(root / "maps", args.maps)
        baselines = [v.partition("=")[2] for v in args.variants if v.startswith("baseline=")]
        training, training_env = _trainer(root / "training", baselines[0] if baselines else None)
        runs = iter(range(10**6))

        def out() -> Path:
            return root / f"out{next(runs)}"

        for model in args.models:
            _timed([_command(model, maps, out(), args.variants[0])])  # warm the file cache and the model
            for variant in args.variants:
                alone = _timed([_command(model, maps, out(), variant)])[0]
                sequential = alone + _timed([_command(model, maps, out(), variant)])[0]
                together = max(_timed([_command(model, maps, out(), variant) for _ in range(2)]))
                trainer = subprocess.Popen(
                    training, env=training_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                try:
                    time.sleep(15)  # past its start: the training steps are running
                    loaded = _timed([_command(model, maps, out(), variant)])[0]
                finally:
                    trainer.kill()
                    trainer.wait()
                per = [t / args.maps for t in (alone, loaded, together, sequential)]
                print(
                    f"| {model} | {variant} | {per[0]:.2f} | {per[1]:.2f} | {loaded / alone:.2f}x "
                    f"| {per[2]:.2f} | {per[3]:.2f} | {together / sequential:.2f}x |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
