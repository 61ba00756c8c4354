"""``echosynth adapt``: a model put in the look of the user's scanner, learned from unlabelled images of it.

The base model (default ``latent-camus128``) draws images of phantom label maps on its grid; a look
(``models.adapted.look``) is fitted that brings them nearest the scanner's images (``fit.fit_look``);
the package written to ``--out`` holds the look and names the base, so ``synthesize --model OUT`` draws any
label map in the scanner's look and ``translate --model OUT`` puts images in it. The work (the base's
images, the fit's state) lives in ``.<out>.adapting`` beside the output: a stopped run resumes from it, and
it is removed when the package is written.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from EchoSynthLib.checks import check_count, check_seed
from EchoSynthLib.errors import InputError

DEFAULT_BASE = "latent-camus128"
DEFAULT_TRANSLATOR = "adversarial-camus128-translate"  # the way back starts from it (``way_back``)
MINIMUM_IMAGES = 16
FRAMES_PER_VIDEO = 32  # at most this many frames of each cine loop, evenly spaced
VIEWS = ("4CH", "2CH")
PHASES = ("ED", "ES")


@dataclass(frozen=True)
class AdaptSettings:
    """What ``adapt`` fits: from the images in ``images`` (a folder, or None) and the frames of ``videos``
    (cine loops), a look for ``base``, written to ``out``."""

    images: Path | None
    out: Path
    base: str = DEFAULT_BASE
    maps: int = 64  # phantom maps the base draws for the fit
    rounds: int = 5
    candidates: int = 8
    seed: int = 0
    device: str = "auto"
    encoder: str = ""  # the echo encoder of the distance (empty: the shipped one)
    videos: tuple[Path, ...] = ()
    way_back: int = 0  # steps of fine-tuning ``translator`` to undo the look (0: no way back)
    translator: str = DEFAULT_TRANSLATOR

    def __post_init__(self) -> None:
        if self.images is None and not self.videos:
            raise InputError("adapt needs the scanner's images (--images) or cine loops (--video)")
        check_count(self.maps, "maps", 8, 4096)
        check_count(self.rounds, "rounds", 1, 50)
        check_count(self.candidates, "candidates", 1, 100)
        check_count(self.way_back, "way-back steps", 0, 100_000)
        check_seed(self.seed, self.maps)


def work_folder(out: Path) -> Path:
    """Where a run keeps its work until the package is written."""
    return out.parent / f".{out.name}.adapting"


def scanner_images(images: Path | None, videos: tuple[Path, ...], shape: tuple[int, int]) -> np.ndarray:
    """The scanner's images (N, H, W) in [-1, 1] on a grid of ``shape`` (taken as ``prepare`` takes them,
    aspect ratio kept): those of the folder ``images`` and up to ``FRAMES_PER_VIDEO`` frames of each video."""
    from EchoSynthLib.data.volume import Volume
    from EchoSynthLib.datasets.echonet import read_video
    from EchoSynthLib.evaluation.image_sets import folder_set, unlabelled_image
    from EchoSynthLib.preprocessing.prepare import PrepareSettings

    settings = PrepareSettings(size=shape)
    found = [] if images is None else list(folder_set(images, settings).images)  # 3D images: refused there
    for video in videos:
        frames = read_video(video)
        for frame in frames[:: max(1, -(-len(frames) // FRAMES_PER_VIDEO))]:
            found.append(unlabelled_image(Volume.from_2d(frame, (1.0, 1.0)), settings))
    return np.stack(found).astype(np.float32) if found else np.zeros((0, *shape), np.float32)


def check_output(out: Path, inputs: list[Path]) -> None:
    """InputError unless ``out`` is new, empty, or an adapted model (which a rerun replaces)."""
    from EchoSynthLib.data.outputs import check_place
    from EchoSynthLib.store.families import ADAPTED
    from EchoSynthLib.store.package import is_package_folder, read_package_header

    check_place(out, inputs, whole=True)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; choose another --out")
    adapted = is_package_folder(out) and read_package_header(out)["kind"] == ADAPTED.kind
    if out.is_dir() and any(out.iterdir()) and not adapted:
        raise InputError(f"{out}: is a folder that holds something else than an adapted model; refusing")


def adapt(
    settings: AdaptSettings,
    progress: Callable[[str, int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """Fit the look and write the adapted model package to ``settings.out``; ``progress(stage, done,
    total)`` for the base's images ("draw") and the fit's rounds ("fit")."""
    from EchoSynthLib.adaptation.fit import fit_look
    from EchoSynthLib.evaluation.feature_spaces import DEFAULT_ENCODER, echo_space
    from EchoSynthLib.inference.generators import GeneratorSettings, open_generator

    out = Path(settings.out)
    check_output(out, [p for p in (settings.images, *settings.videos) if p is not None])
    generator = open_generator(GeneratorSettings(settings.base, device=settings.device), warn)
    shape = tuple(getattr(generator, "image_shape", (128, 128)))
    if len(shape) != 2:
        raise InputError(f"'{settings.base}' is a 3D model; adapt fits 2D models")
    scanner = scanner_images(settings.images, settings.videos, shape)
    if len(scanner) < MINIMUM_IMAGES:
        where = settings.images if settings.images is not None else ", ".join(map(str, settings.videos))
        raise InputError(
            f"{where}: needs at least {MINIMUM_IMAGES} 2D images of the scanner, found {len(scanner)}"
        )
    work = _work_for(out, _run_key(settings, scanner))
    drawn, inside, labels = _base_images(generator, shape, settings, work, progress)
    space = echo_space(settings.encoder or DEFAULT_ENCODER, settings.device)

    def embed(array: np.ndarray) -> np.ndarray:
        return np.asarray(space.embed(array), dtype=np.float64)

    def fitted(done: int, total: int) -> None:
        if progress is not None:
            progress("fit", done, total)

    state = fit_look(
        drawn,
        inside,
        embed(scanner),
        embed,
        work / "fit.json",
        rounds=settings.rounds,
        candidates=settings.candidates,
        seed=settings.seed,
        progress=fitted,
    )
    folders = {}
    if settings.way_back:
        from EchoSynthLib.adaptation.way_back import FOLDER, fine_tune
        from EchoSynthLib.models.adapted.look import FittedLook

        look = FittedLook(state.look.kinds, state.look.settings, shape[-1])

        def tuned(step: int, total: int) -> None:
            if progress is not None:
                progress("way back", step, total)

        folders[FOLDER], steps = fine_tune(
            settings.translator,
            look,
            drawn,
            labels,
            work,
            settings.way_back,
            settings.device,
            tuned,
            settings.seed,
        )
    _write_package(out, settings, shape, state, len(scanner), folders, steps if folders else 0)
    shutil.rmtree(work, ignore_errors=True)
    return out


# All a work folder holds: the run's key, the fit's state, the base's images, the way back's cache and run.
WORK_FILES = ("run.key", "fit.json", "base_images.npz", "way-back-data", "way-back-run")


def _run_key(settings: AdaptSettings, scanner: np.ndarray) -> str:
    """What a run's work depends on: the scanner's images and the settings of the fit."""
    import hashlib
    import json

    from EchoSynthLib.models.adapted import base_identity

    fit = [
        settings.base,
        base_identity(settings.base),
        settings.maps,
        settings.rounds,
        settings.candidates,
        settings.seed,
        settings.encoder,
    ]
    if settings.way_back:  # a stopped way back resumes only with the same translator
        fit += [settings.translator, base_identity(settings.translator)]
    digest = hashlib.sha256(json.dumps(fit).encode())
    digest.update(repr(scanner.shape).encode())
    digest.update(np.ascontiguousarray(scanner).tobytes())
    return digest.hexdigest()


def _work_for(out: Path, key: str) -> Path:
    """The work folder of a run: kept when an earlier run of the same images and settings left it (it
    resumes), emptied when another run's (other images or settings), refused when it holds anything else."""
    work = work_folder(out)
    if work.exists():
        # (a run killed while writing leaves hidden temporaries of its work files: the writer clears them)
        unknown = [
            p.name
            for p in work.iterdir()
            if p.name not in WORK_FILES and not (p.name.startswith(".") and p.name[1:].startswith(WORK_FILES))
        ]
        if unknown or not work.is_dir():
            raise InputError(
                f"{work}: holds {unknown[0] if unknown else 'a file'}, not an earlier adapt run's work"
            )
        mark = work / WORK_FILES[0]
        if mark.is_file() and mark.read_text() == key:
            return work
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / WORK_FILES[0]).write_text(key)
    return work


def _base_images(generator, shape, settings: AdaptSettings, work: Path, progress):
    """The base's images (B, 1, H, W) of phantom maps, their sectors and their label maps (B, H, W), drawn
    once per run (kept in ``work``)."""
    import torch

    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
    from EchoSynthLib.data.atomic import write_atomically
    from EchoSynthLib.data.labels import Structure
    from EchoSynthLib.inference.generators import generate_for_maps

    path = work / "base_images.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            if "labels" in stored:  # (a work folder of an earlier version has none: drawn again)
                images, inside = torch.from_numpy(stored["images"]), torch.from_numpy(stored["inside"])
                return images, inside, stored["labels"]
    maps = []
    for k in range(settings.maps):
        view, phase = VIEWS[k % len(VIEWS)], PHASES[(k // len(VIEWS)) % len(PHASES)]
        grid = PhantomGrid.for_view(view, size=shape[-1])
        maps.append(generator.prepare(phantom_label_map(view, phase, settings.seed + k, grid).labels))

    def drew(fraction: float) -> None:
        if progress is not None:
            progress("draw", round(fraction * len(maps)), len(maps))

    drawn = generate_for_maps(generator, maps, [1] * len(maps), settings.seed, drew)
    images = np.stack([np.asarray(m[0].array, np.float32).reshape(shape) / 127.5 - 1.0 for m in drawn])
    labels = np.stack([np.asarray(m.array).reshape(shape).astype(np.uint8) for m in maps])
    inside = labels != Structure.BACKGROUND.label
    arrays = {"images": images[:, None], "inside": inside[:, None], "labels": labels}
    write_atomically(path, lambda tmp: _save(tmp, **arrays))
    return torch.from_numpy(images[:, None]), torch.from_numpy(inside[:, None]), labels


def _save(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a handle: np.savez would add ".npz" to a temporary name
        np.savez(handle, **arrays)


def _write_package(
    out: Path, settings: AdaptSettings, shape, state, count: int, folders: dict, steps: int
) -> None:
    from EchoSynthLib.models.adapted import base_identity
    from EchoSynthLib.models.adapted.config import AdaptedConfig
    from EchoSynthLib.models.adapted.look import COMPONENT
    from EchoSynthLib.store.families import ADAPTED
    from EchoSynthLib.store.package import save_package

    identity = base_identity(settings.base)
    config = AdaptedConfig(settings.base, identity, state.look.kinds, shape[-1])
    fit = {
        "images": count,
        "base_images": settings.maps,
        "rounds": state.rounds_done,
        "echo_frechet_distance_before": round(state.start_distance, 3),
        "echo_frechet_distance_after": round(state.distance, 3),
    }
    sources = [str(p) for p in (settings.images, *settings.videos) if p is not None]
    provenance = {"adapted_from": settings.base, "scanner_images": sources, "fit": fit}
    card = f"""# Adapted model: {out.name}

`{settings.base}` with its images put in the look of the scanner whose {count} unlabelled images came from
{", ".join(f"`{p}`" for p in sources)} (`echosynth adapt`). The look is a fixed chain of degradations
({", ".join(state.look.kinds) or "none"}) fitted so that the base's images come nearest the scanner's in
echo-encoder features: Fréchet distance {fit["echo_frechet_distance_before"]} before, \
{fit["echo_frechet_distance_after"]} after ({state.rounds_done} rounds).

Terms of use: those of `{settings.base}` (see its model card); this package holds no weights of its own
but the look's numbers, and draws with the base model, which must be installed.
"""
    if folders:
        provenance["way_back"] = {"translator": settings.translator, "steps": steps}
        card += f"""
## The way back: `{out.name}/way-back`

`{settings.translator}` fine-tuned for {steps} steps to undo this look (pairs: the base's
{settings.maps} images of phantom maps, each in the fitted look, to the image itself). `echosynth translate
--model {out.name}/way-back --images SCANNER_IMAGES --segment ...` takes the scanner's images to the base's
look. Terms of use: those of `{settings.translator}` (see its model card).
"""
    save_package(
        out,
        ADAPTED.kind,
        config.as_dict(),
        None,
        card,
        provenance,
        components={COMPONENT: state.look.state()},
        folders=folders,
    )
