"""What each kind of model package does (its task), without importing torch.

The Generator list in Slicer and the worker offer a package only for a task it performs: today
``sdm2d`` packages turn a label map into an image; ``segmenter2d`` packages segment images and are never
generators. Each kind string is declared here once.
"""

from __future__ import annotations

from EchoSynthLib.errors import InputError

SDM_KIND = "sdm2d"
SEGMENTER_KIND = "segmenter2d"

LABELS_TO_IMAGE = "label map -> image"
IMAGE_TO_LABELS = "image -> label map"

TASK_OF_KIND = {
    SDM_KIND: LABELS_TO_IMAGE,
    SEGMENTER_KIND: IMAGE_TO_LABELS,
}


def task_of(kind: str) -> str | None:
    """The task of a package kind, or None for a kind this EchoSynth does not know."""
    return TASK_OF_KIND.get(kind)


def kinds_for(task: str) -> tuple[str, ...]:
    """The package kinds that perform ``task``."""
    return tuple(kind for kind, known in TASK_OF_KIND.items() if known == task)


def require_task(kind: str, task: str, what: str) -> None:
    """InputError naming ``what`` when a ``kind`` package cannot do ``task``."""
    if task_of(kind) != task:
        does = task_of(kind) or "unknown to this EchoSynth"
        raise InputError(
            f"{what} is a '{kind}' model ({does}); it cannot be used for {task} "
            f"(kinds that can: {', '.join(kinds_for(task))})"
        )
