"""Dataset readers: each ``scan(root, **options)`` lists the cases of one public layout.

``camus`` (original .mhd/.nii.gz), ``camus224`` (resampled arrays), ``mitea`` (nnU-Net-style pairs),
``echonet`` (EchoNet-Dynamic videos + tracings) and ``folder`` (any image/label pairs, .seg.nrrd too).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from EchoSynthLib.data.cases import Scan
from EchoSynthLib.errors import InputError

DATASETS = ("camus", "camus224", "mitea", "echonet", "folder")


def scan_dataset(dataset: str, root: str | Path, **options: Any) -> Scan:
    """Scan ``root`` with the reader for ``dataset`` (options are the reader's keyword arguments)."""
    from EchoSynthLib.datasets import camus, camus224, echonet, folder, nnunet

    readers: dict[str, Callable[..., Scan]] = {
        "camus": camus.scan,
        "camus224": camus224.scan,
        "mitea": nnunet.scan,
        "echonet": echonet.scan,
        "folder": folder.scan,
    }
    if dataset not in readers:
        raise InputError(f"unknown dataset '{dataset}' (known: {', '.join(DATASETS)})")
    return readers[dataset](root, **options)
