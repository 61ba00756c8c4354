"""Seconds per Generate through the Slicer module's scene path (slicer-core MRML, a real worker process):
export of the label map, worker start-up, synthesis, import of the new nodes. Simulator generator.

    .venv/bin/python bench/slicer_synthesis_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "EchoSynth"))

import slicer

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthScene import synthesis
from EchoSynthScene.geometry import fill_volume_node
from EchoSynthScene.sequences import sequences_logic

CASES = (("4CH", 256, 1), ("4CH", 256, 8), ("3D", 128, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    sequences_logic(scene)
    for view, size, n in CASES:
        labels = phantom_label_map(view, "ED", seed=1, grid=PhantomGrid.for_view(view, size)).labels
        node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"{view} {size}")
        fill_volume_node(node, labels)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            synthesis.synthesize(node, n=n)
            times.append(time.perf_counter() - start)
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"{view} {size} n={n}: median {statistics.median(times):.2f} s per Generate ({runs})")


if __name__ == "__main__":
    main()
