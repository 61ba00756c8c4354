"""Augmentation: Echo-from-noise label-map warps and paired image + label training transforms (MONAI).

Importing this package imports MONAI and torch; ``EchoSynthLib`` itself does not import it.
"""

from EchoSynthLib.augmentation.files import augment_files, output_path
from EchoSynthLib.augmentation.labelmaps import (
    LabelMapAugmentation,
    augment_label_map,
    augment_many,
    variant_seed,
)
from EchoSynthLib.augmentation.paired import paired_augmentation

__all__ = [
    "LabelMapAugmentation",
    "augment_files",
    "augment_label_map",
    "augment_many",
    "output_path",
    "paired_augmentation",
    "variant_seed",
]
