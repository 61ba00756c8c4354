"""First-use installs inside Slicer: only what the chosen run needs, after one EchoSynth prompt.

- the simulator without augmented anatomy needs nothing: numpy, scipy and SimpleITK are Slicer's own;
- augmented anatomy needs torch and MONAI;
- a trained model needs torch and ``Resources/requirements.txt`` (what synthesis, translation and generated
  cases import), plus ``requirements-samplers.txt`` (diffusers) when its sampler is ``dpm++`` or
  ``dpm++sde`` (the default; never for a family without a sampler, the adversarial models);
- ``requirements-cli.txt`` (tqdm) is for the batch script, ``requirements-training.txt`` never installed.

Every dependency that an installed requirement declares (its metadata, markers evaluated here, extras only
where requested) is checked as well, recursively, and installed with the rest when missing: Slicer's
``pip_ensure`` with ``skip_packages`` installs with ``--no-deps`` and only warns when a dependency fails.
torch comes from the PyTorch extension's installer (``PyTorchUtils``, which picks the build that fits the
GPU driver) with a version requirement; the other packages through ``slicer.packaging.pip_ensure``
(Slicer >= 5.11; without dialogs when there is no main window), or ``slicer.util.pip_install`` where
``slicer.packaging`` cannot be imported (Slicer 5.10). ``slicer/__init__.py`` does not import its
submodules, so ``slicer.packaging`` is imported here, not looked up as an attribute. Nothing is installed at
import. Every refusal or failure is a DependencyError whose message says what to do; ``ensure`` checks
again after installing, so a skipped install (Slicer's testing mode skips ``pip_ensure``) is an error too,
never a silent success.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from EchoSynthLib.diffusion import DEFAULT_SAMPLER, DIFFUSERS_SAMPLERS  # torch-free: names only

if TYPE_CHECKING:
    from packaging.requirements import Requirement

    from EchoSynthLib.store.families import Family

RESOURCES = Path(__file__).resolve().parent.parent / "Resources"
REQUIREMENTS = RESOURCES / "requirements.txt"  # every trained-model run
SAMPLER_REQUIREMENTS = RESOURCES / "requirements-samplers.txt"  # the samplers run by diffusers
CLI_REQUIREMENTS = RESOURCES / "requirements-cli.txt"  # the command line's progress bars
TRAINING_REQUIREMENTS = RESOURCES / "requirements-training.txt"  # command line only, never in Slicer
REQUIREMENT_FILES = (REQUIREMENTS, SAMPLER_REQUIREMENTS, CLI_REQUIREMENTS, TRAINING_REQUIREMENTS)
# The samplers that import diffusers (EchoSynthLib.diffusion.samplers.solve: DPMSolverMultistepScheduler).
PROVIDED_BY_SLICER = ("SimpleITK", "torch")  # never replaced by pip (SimpleITK: Slicer's; torch: PyTorch's)
SLICER_BUNDLED = ("numpy", "scipy", "SimpleITK")  # in every Slicer's Python: all the simulator needs
REQUESTER = "EchoSynth"
# MONAI 1.6 requires torch >= 2.8 (its package metadata).
TORCH_REQUIREMENT = ">=2.8"
AUGMENTATION_PACKAGES = ("monai",)
SIMULATOR = "simulator"
# Approximate download sizes (MB) of the x86-64 wheels, for the prompt.
DOWNLOAD_MB = {
    "monai": 3,
    "numpy": 17,
    "scipy": 36,
    "slicerio": 1,
    "safetensors": 1,
    "einops": 0.1,
    "tqdm": 0.1,
    "diffusers": 6,
}
TORCH_SIZE = "about 0.2 GB (CPU build) to 3 GB (CUDA build with its NVIDIA libraries)"


class DependencyError(Exception):
    """A package could not be installed, or the user declined; the message says what to do."""


def read_requirements(path: Path | None = None) -> list:
    """The requirements (``packaging`` Requirement objects) of a requirements file, comments skipped; with
    no ``path``, of every file in REQUIREMENT_FILES (the library's whole list), in that order."""
    from packaging.requirements import Requirement

    if path is None:
        return [r for each in REQUIREMENT_FILES for r in read_requirements(each)]
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _requires(name: str) -> list[str]:
    """The requirement strings in an installed distribution's metadata (none if it is not installed)."""
    try:
        return importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return []


def _satisfied(requirement) -> bool:
    found = _installed(requirement.name)
    return found is not None and requirement.specifier.contains(found, prereleases=True)


def missing_requirements(requirements: list) -> list[str]:
    """The requirements not installed, or installed at a version outside their specifier (as text)."""
    out = []
    for requirement in requirements:
        if not _satisfied(requirement):
            found = _installed(requirement.name)
            out.append(str(requirement) + (f" (found {found})" if found else ""))
    return out


def _applies(requirement: Requirement, extras: frozenset[str] = frozenset()) -> bool:
    """Whether a requirement's marker holds in this Python, with no extra or one of ``extras``."""
    marker = requirement.marker
    return marker is None or any(marker.evaluate({"extra": e}) for e in ("", *sorted(extras)))


def _unmet(requirements: tuple[Requirement, ...]) -> list[tuple[Requirement, str | None]]:
    """(requirement, the package that declares it or None) for every requirement that is not satisfied:
    those given, then, recursively, the dependencies that satisfied ones declare. torch and SimpleITK are
    left to their own installers."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    left_alone = {canonicalize_name(name) for name in PROVIDED_BY_SLICER}
    queue: list[tuple[Requirement, str | None]] = [(r, None) for r in requirements if _applies(r)]
    checked: set[str] = set()
    walked: set[tuple[str, frozenset[str]]] = set()
    unmet = []
    while queue:
        requirement, parent = queue.pop(0)
        name = canonicalize_name(requirement.name)
        if name in left_alone or str(requirement) in checked:
            continue
        checked.add(str(requirement))
        if not _satisfied(requirement):
            unmet.append((requirement, parent))
            continue
        extras = frozenset(requirement.extras)
        if (name, extras) in walked:
            continue
        walked.add((name, extras))
        for text in _requires(requirement.name):
            try:
                dependency = Requirement(text)
            except InvalidRequirement:  # a malformed line in someone's metadata: not ours to judge
                continue
            if _applies(dependency, extras):
                queue.append((dependency, requirement.name))
    return unmet


def _pip_text(requirement: Requirement) -> str:
    """A requirement as pip takes it here: name, extras and versions (its marker was evaluated already)."""
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    return f"{requirement.name}{extras}{requirement.specifier}"


def torch_version() -> str | None:
    """The installed torch version (from its metadata, without importing it), or None."""
    return _installed("torch")


@dataclass(frozen=True)
class Needs:
    """What one run needs beyond Slicer: torch or not, and pip requirements."""

    torch: bool = False
    requirements: tuple = ()

    @property
    def nothing(self) -> bool:
        """True when the run needs nothing beyond Slicer's own Python."""
        return not self.torch and not self.requirements


def _model_family(generator: str) -> Family | None:
    """The model family (``EchoSynthLib.store.families.Family``) of a model folder or installed model name,
    from its config.json alone; None where it cannot be told here (the worker says why later)."""
    from EchoSynthLib.errors import InputError
    from EchoSynthLib.store.families import family_of_kind
    from EchoSynthLib.store.package import read_package_header
    from EchoSynthLib.store.registry import resolve_model

    try:
        return family_of_kind(read_package_header(resolve_model(generator))["kind"])
    except (InputError, OSError, ValueError):
        return None


def _uses_diffusers(generator: str, sampler: str | None) -> bool:
    """Whether sampling ``generator`` with ``sampler`` (None: the option's default) may import diffusers:
    the sampler is one of DIFFUSERS_SAMPLERS and the model's family takes a sampler (if it can be told)."""
    if (sampler or DEFAULT_SAMPLER) not in DIFFUSERS_SAMPLERS:
        return False
    family = _model_family(generator)
    return family is None or "sampler" in family.sampling


def needs_for(
    generator: str, augment: int = 0, extra: tuple[str, ...] = (), sampler: str | None = None
) -> Needs:
    """What a run with ``generator`` ('simulator', a model name or folder), ``augment`` new anatomies and
    ``sampler`` (None: the default sampler) needs; ``extra`` names more packages of the requirement files
    (the batch script's command line needs tqdm)."""
    names = set(extra) | (set(AUGMENTATION_PACKAGES) if augment else set())
    model = generator != SIMULATOR
    if model:
        names |= {r.name for r in read_requirements(REQUIREMENTS)}
        if _uses_diffusers(generator, sampler):
            names |= {r.name for r in read_requirements(SAMPLER_REQUIREMENTS)}
    chosen = tuple(r for r in read_requirements() if r.name in names)
    return Needs(model or bool(augment), chosen)


@dataclass(frozen=True)
class Missing:
    """What of a Needs is not installed: torch (absent, or too old) and pip requirements (the run's own,
    then dependencies they declare; ``needed_by`` maps such a requirement's text to its declarer)."""

    torch: bool
    torch_found: str | None
    requirements: tuple
    needed_by: tuple[tuple[str, str], ...] = ()

    @property
    def nothing(self) -> bool:
        return not self.torch and not self.requirements

    def describe(self, requirement: Requirement, found: bool = False) -> str:
        """``requirement`` as text, with the package that needs it and, with ``found``, what is installed."""
        notes = [f"needed by {p}" for r, p in self.needed_by if r == str(requirement)]
        version = _installed(requirement.name) if found else None
        notes += [f"found {version}"] if version else []
        return _pip_text(requirement) + (f" ({'; '.join(notes)})" if notes else "")


def missing_for(needs: Needs) -> Missing:
    """The part of ``needs`` that is not installed now, dependencies of installed packages included."""
    from packaging.requirements import Requirement

    found = torch_version()
    torch_missing = needs.torch and (
        found is None or not Requirement(f"torch{TORCH_REQUIREMENT}").specifier.contains(found, True)
    )
    unmet = _unmet(needs.requirements)
    needed_by = tuple((str(r), parent) for r, parent in unmet if parent is not None)
    return Missing(torch_missing, found if needs.torch else None, tuple(r for r, _ in unmet), needed_by)


def install_message(missing: Missing) -> str:
    """The EchoSynth prompt: what will be installed and about how big the downloads are."""
    lines = []
    if missing.torch:
        lines.append(f"  torch{TORCH_REQUIREMENT} through the PyTorch extension: {TORCH_SIZE}")
    total = 0.0
    for requirement in missing.requirements:
        size = DOWNLOAD_MB.get(requirement.name, 1)
        total += size
        lines.append(f"  {missing.describe(requirement)}: about {size:g} MB")
    summary = f"about {total:.0f} MB" + (" plus torch" if missing.torch else "")
    return (
        "EchoSynth needs these Python packages for this run. They will be downloaded and installed into "
        f"Slicer's Python now ({summary}; this can take minutes):\n" + "\n".join(lines)
    )


def _has_main_window() -> bool:
    """Whether Slicer runs with its main window (not ``--no-main-window``, not PythonSlicer)."""
    import slicer

    try:
        return slicer.util.mainWindow() is not None
    except (AttributeError, ImportError):  # PythonSlicer: no application
        return False


def ensure(needs: Needs, ask: bool | None = None) -> None:
    """Inside Slicer: install what ``needs`` lacks, after asking when ``ask`` (None: when Slicer has a main
    window, so a headless run never waits on a dialog).

    Returns once everything is installed; a refusal or any failure is a DependencyError."""
    missing = missing_for(needs)
    if missing.nothing:
        return
    import slicer

    interactive = _has_main_window()
    if (interactive if ask is None else ask) and not slicer.util.confirmOkCancelDisplay(
        install_message(missing), windowTitle="EchoSynth: install Python packages"
    ):
        raise DependencyError("Nothing was installed (declined): press Generate again to install them.")
    if missing.torch:
        _install_torch(missing.torch_found)
    offered: set[str] = set()  # each requirement goes to pip once; what an install reveals goes next
    while pending := [r for r in missing_for(needs).requirements if _pip_text(r) not in offered]:
        offered |= {_pip_text(r) for r in pending}
        _install_packages(pending, interactive)
    still = missing_for(needs)
    if not still.nothing:
        names = ([f"torch{TORCH_REQUIREMENT}"] if still.torch else []) + [
            still.describe(r, found=True) for r in still.requirements
        ]
        command = f"slicer.util.pip_install({[_pip_text(r) for r in still.requirements]!r})"
        how = (
            f"from the Python console with {command}"
            if still.requirements
            else "with the PyTorch Utils module"
        )
        raise DependencyError(
            f"These packages are still not installed: {', '.join(names)}. Slicer may be in testing mode "
            f"(installs are skipped there), or pip could not install them; install them {how} and restart "
            "Slicer."
        )


def _install_torch(found: str | None) -> None:
    if found is not None:
        raise DependencyError(
            f"torch {found} is older than EchoSynth needs (torch{TORCH_REQUIREMENT}): in the PyTorch Utils "
            f"module set the version requirement to '{TORCH_REQUIREMENT}', reinstall PyTorch and restart "
            "Slicer."
        )
    try:
        import PyTorchUtils
    except ImportError:
        raise DependencyError(
            "EchoSynth needs PyTorch: install the 'PyTorch' extension from the Extensions Manager, restart "
            "Slicer and press Generate again."
        ) from None
    try:
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT
        )
    except Exception as error:  # PyTorchUtils runs pip/light-the-torch: any error means "not installed"
        raise DependencyError(
            f"PyTorch could not be installed ({error}). Check the network connection, or install it from "
            "the PyTorch Utils module, then press Generate again."
        ) from error
    if torch is None:
        raise DependencyError("PyTorch was not installed: install it from the PyTorch Utils module.")


def _install_packages(requirements: list, interactive: bool = True) -> None:
    """pip-install ``requirements``; ``interactive`` False: no progress or restart dialog (no main window)."""
    import slicer

    names = list(dict.fromkeys(_pip_text(r) for r in requirements))
    try:
        try:
            import slicer.packaging as packaging
        except ImportError:  # Slicer 5.10: no slicer.packaging
            slicer.util.pip_install(names)
        else:
            packaging.pip_ensure(
                names,
                skip_packages=list(PROVIDED_BY_SLICER),
                prompt_install=False,  # EchoSynth's own prompt has asked already
                prompt_restart=interactive,
                requester=REQUESTER,
                show_progress=interactive,
            )
    except Exception as error:  # pip's CalledProcessError, a declined restart dialog, ...
        raise DependencyError(
            f"pip could not install {', '.join(names)} ({error}). Check the network connection and the "
            "Python console's log, then press Generate again."
        ) from error
