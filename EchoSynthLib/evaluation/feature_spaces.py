"""Feature spaces for the distribution metrics, each named in the report next to its numbers:

- ``echo``: the project's self-supervised echo encoder (texture, speckle and grey levels as well as
  anatomy); the shipped one is ``DEFAULT_ENCODER``;
- ``segmenter``: the bottleneck of a label-adherence segmenter (anatomy, semantic);
- ``inception``: ImageNet Inception-v3 (FID proper), only from a local safetensors weights file and with
  torchvision installed; nothing is downloaded.

3D sets are seen in 2.5D: the 2D features of slices along each of the three axes (``slices_along``).
Features are cached per space, model weights and set in the report's ``features/`` folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from EchoSynthLib.data.atomic import write_atomically
from EchoSynthLib.errors import InputError
from EchoSynthLib.evaluation.image_sets import ImageSet
from EchoSynthLib.store.package import package_identity

DEFAULT_ENCODER = "echo-encoder-camus"
SLICES_PER_AXIS = 8


@dataclass
class FeatureSpace:
    """A named way from images (N, H, W) in [-1, 1] to feature vectors (N, F)."""

    key: str
    description: str
    identity: str  # changes when the weights change (cache key)
    embed: Callable[[np.ndarray], np.ndarray]


def echo_space(model: str | Path = DEFAULT_ENCODER, device: str = "auto") -> FeatureSpace:
    """The echo encoder of a package (a name or a folder)."""
    from EchoSynthLib.models.features.network import EchoEncoder
    from EchoSynthLib.store.families import ENCODER_KIND
    from EchoSynthLib.store.registry import resolve_model

    folder = resolve_model(model, kind=ENCODER_KIND)
    encoder = EchoEncoder.load(folder, device)
    return FeatureSpace(
        "echo", f"echo encoder '{folder.name}' (self-supervised)", package_identity(folder), encoder.embed
    )


def segmenter_space(model: str | Path, device: str = "auto") -> FeatureSpace:
    """The globally pooled bottleneck of a segmenter package: the smallest feature map of its U-Net."""
    import torch

    from EchoSynthLib.models.segmenter.network import Segmenter
    from EchoSynthLib.store.families import SEGMENTER_KIND
    from EchoSynthLib.store.registry import resolve_model

    folder = resolve_model(model, kind=SEGMENTER_KIND)
    segmenter = Segmenter.load(folder, device)

    @torch.no_grad()
    def embed(images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        parts = []
        for start in range(0, len(images), batch_size):
            maps: list[torch.Tensor] = []

            def keep(_module, _inputs, output, maps: list[torch.Tensor] = maps) -> None:
                if isinstance(output, torch.Tensor) and output.ndim == 4:
                    maps.append(output)

            hooks = [
                m.register_forward_hook(keep) for m in segmenter.model.modules() if not list(m.children())
            ]
            try:
                batch = torch.as_tensor(images[start : start + batch_size], dtype=torch.float32)[:, None]
                segmenter.model(batch.to(segmenter.device))
            finally:
                for hook in hooks:
                    hook.remove()
            deepest = min(maps, key=lambda m: (m.shape[-1] * m.shape[-2], -m.shape[1]))
            parts.append(deepest.mean(dim=(-2, -1)).double().cpu().numpy())
        return np.concatenate(parts)

    return FeatureSpace("segmenter", f"segmenter '{folder.name}' bottleneck", package_identity(folder), embed)


INCEPTION_KEY = "Mixed_7c.branch_pool.conv.weight"  # the last block of torchvision's Inception-v3


def inception_space(weights: str | Path | None, device: str = "auto") -> FeatureSpace | str:
    """ImageNet Inception-v3 pool features from a local safetensors file, or the reason it is not computed."""
    if weights is None:
        return "not computed: no --inception-weights given (nothing is downloaded)"
    path = Path(weights)
    if not path.is_file() or not path.name.endswith(".safetensors"):
        raise InputError(f"{path}: --inception-weights must be a safetensors file (pickles are never loaded)")
    from safetensors import safe_open

    try:  # the file itself first (an empty file, a renamed pickle), whether or not torchvision is here
        with safe_open(str(path), framework="pt") as weights_file:
            names = set(weights_file.keys())
    except Exception as error:  # safetensors raises its own error types for a file that is not one
        raise InputError(f"{path}: not a safetensors file ({type(error).__name__})") from None
    if INCEPTION_KEY not in names:
        raise InputError(f"{path}: not Inception-v3 weights (no '{INCEPTION_KEY}' tensor)")
    try:
        from torchvision.models import inception_v3
    except ImportError:
        return "not computed: needs torchvision (pip install torchvision) for the Inception-v3 network"
    import torch
    from safetensors.torch import load_file

    from EchoSynthLib.engine.device import pick_device

    network = inception_v3(weights=None, aux_logits=True, init_weights=False)
    try:
        network.load_state_dict(load_file(str(path)))
    except Exception as error:  # wrong file: many error types from safetensors and load_state_dict
        raise InputError(f"{path}: not Inception-v3 weights ({type(error).__name__})") from None
    network.fc = torch.nn.Identity()
    resolved = pick_device(device)
    network = network.eval().to(resolved)

    @torch.no_grad()
    def embed(images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        parts = []
        for start in range(0, len(images), batch_size):
            batch = torch.as_tensor(images[start : start + batch_size], dtype=torch.float32)[:, None]
            batch = torch.nn.functional.interpolate((batch + 1) / 2, size=(299, 299), mode="bilinear")
            batch = (batch.expand(-1, 3, -1, -1) - mean) / std
            parts.append(network(batch.to(resolved)).double().cpu().numpy())
        return np.concatenate(parts)

    return FeatureSpace("inception", "ImageNet Inception-v3 (FID)", path.stem, embed)


def slices_along(volumes: np.ndarray, axis: int, count: int = SLICES_PER_AXIS) -> np.ndarray:
    """``count`` evenly spaced inner slices of each volume (N, D, H, W) across ``axis`` (0, 1 or 2), as 2D
    images (N * count, ., .) resized to the in-plane size of the first axis' slices."""
    import torch

    size = volumes.shape[2:]
    length = volumes.shape[1 + axis]
    places = np.linspace(0, length - 1, count + 2)[1:-1].round().astype(int)
    picked = np.take(volumes, places, axis=1 + axis)  # (N, ..count.., ...)
    picked = np.moveaxis(picked, 1 + axis, 1).reshape(-1, *np.moveaxis(picked, 1 + axis, 1).shape[2:])
    if picked.shape[1:] != size:
        tensor = torch.from_numpy(np.ascontiguousarray(picked))[:, None]
        picked = torch.nn.functional.interpolate(tensor, size=size, mode="bilinear").numpy()[:, 0]
    return picked.astype(np.float32)


def _save(path: Path, values: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a handle: np.save would add ".npy" to a temporary name
        np.save(handle, values, allow_pickle=False)


def features_of(
    space: FeatureSpace, images: ImageSet, cache: Path | None, only: str | None = None
) -> dict[str, np.ndarray]:
    """Features of a set: {"2d": (N, F)} for 2D sets, {"axis0".."axis2": (N * slices, F)} for 3D (``only``:
    just that view); read from ``cache`` when this space and set were embedded before."""
    views = (
        {"2d": images.images}
        if images.spatial_dims == 2
        else {f"axis{a}": slices_along(images.images, a) for a in range(3) if only in (None, f"axis{a}")}
    )
    found = {}
    for view, array in views.items():
        path = (
            None
            if cache is None
            else cache / f"{space.key}-{space.identity}-{images.fingerprint()}-{view}.npy"
        )
        if path is not None and path.is_file():
            try:
                found[view] = np.load(path, allow_pickle=False)
                continue
            except (OSError, ValueError, EOFError):  # a damaged feature cache entry: computed again
                path.unlink(missing_ok=True)
        found[view] = np.asarray(space.embed(array), dtype=np.float64)
        if path is not None:
            write_atomically(path, lambda tmp, values=found[view]: _save(tmp, values))
    return found
