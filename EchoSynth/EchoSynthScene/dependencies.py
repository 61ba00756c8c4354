"""First-use installs inside Slicer: only what the chosen run needs, after one EchoSynth prompt.

- the simulator without augmented anatomy needs nothing: numpy, scipy and SimpleITK are Slicer's own;
- augmented anatomy needs torch and MONAI;
- a trained model needs torch and every package of ``Resources/requirements.txt``.

torch comes from the PyTorch extension's installer (``PyTorchUtils``, which picks the build that fits the
GPU driver) with a version requirement; the other packages through ``slicer.packaging.pip_ensure``
(Slicer >= 5.11), or ``slicer.util.pip_install`` where ``slicer.packaging`` cannot be imported (Slicer
5.10). ``slicer/__init__.py`` does not import its submodules, so ``slicer.packaging`` is imported here, not
looked up as an attribute. Nothing is installed at import. Every refusal or failure is a DependencyError
whose message says what to do; ``ensure`` checks again after installing, so a skipped install (Slicer's
testing mode skips ``pip_ensure``) is an error too, never a silent success.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent.parent / "Resources" / "requirements.txt"
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
    "matplotlib": 10,
    "opencv-python-headless": 57,
    "diffusers": 6,
    "scikit-learn": 9,
}
TORCH_SIZE = "about 0.2 GB (CPU build) to 3 GB (CUDA build with its NVIDIA libraries)"


class DependencyError(Exception):
    """A package could not be installed, or the user declined; the message says what to do."""


def read_requirements(path: Path = REQUIREMENTS) -> list:
    """The requirements (``packaging`` Requirement objects) of a requirements file, comments skipped."""
    from packaging.requirements import Requirement

    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


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


def needs_for(generator: str, augment: int = 0, extra: tuple[str, ...] = ()) -> Needs:
    """What a run with ``generator`` ('simulator', a model name or folder) and ``augment`` new anatomies
    needs; ``extra`` names more requirements.txt packages (the batch script's CLI needs tqdm)."""
    requirements = read_requirements()
    if generator != SIMULATOR:
        return Needs(True, tuple(requirements))
    names = set(extra) | (set(AUGMENTATION_PACKAGES) if augment else set())
    chosen = tuple(r for r in requirements if r.name in names)
    return Needs(bool(augment), chosen)


@dataclass(frozen=True)
class Missing:
    """What of a Needs is not installed: torch (absent, or too old) and pip requirements."""

    torch: bool
    torch_found: str | None
    requirements: tuple

    @property
    def nothing(self) -> bool:
        return not self.torch and not self.requirements


def missing_for(needs: Needs) -> Missing:
    """The part of ``needs`` that is not installed now."""
    from packaging.requirements import Requirement

    found = torch_version()
    torch_missing = needs.torch and (
        found is None or not Requirement(f"torch{TORCH_REQUIREMENT}").specifier.contains(found, True)
    )
    pending = tuple(r for r in needs.requirements if not _satisfied(r))
    return Missing(torch_missing, found if needs.torch else None, pending)


def install_message(missing: Missing) -> str:
    """The EchoSynth prompt: what will be installed and about how big the downloads are."""
    lines = []
    if missing.torch:
        lines.append(f"  torch{TORCH_REQUIREMENT} through the PyTorch extension: {TORCH_SIZE}")
    total = 0.0
    for requirement in missing.requirements:
        size = DOWNLOAD_MB.get(requirement.name, 1)
        total += size
        lines.append(f"  {requirement}: about {size:g} MB")
    summary = f"about {total:.0f} MB" + (" plus torch" if missing.torch else "")
    return (
        "EchoSynth needs these Python packages for this run. They will be downloaded and installed into "
        f"Slicer's Python now ({summary}; this can take minutes):\n" + "\n".join(lines)
    )


def ensure(needs: Needs, ask: bool = True) -> None:
    """Inside Slicer: install what ``needs`` lacks, after asking when ``ask``.

    Returns once everything is installed; a refusal or any failure is a DependencyError."""
    missing = missing_for(needs)
    if missing.nothing:
        return
    import slicer

    if ask and not slicer.util.confirmOkCancelDisplay(
        install_message(missing), windowTitle="EchoSynth: install Python packages"
    ):
        raise DependencyError("Nothing was installed (declined): press Generate again to install them.")
    if missing.torch:
        _install_torch(missing.torch_found)
    if missing.requirements:
        _install_packages(list(missing.requirements))
    still = missing_for(needs)
    if not still.nothing:
        names = ([f"torch{TORCH_REQUIREMENT}"] if still.torch else []) + [str(r) for r in still.requirements]
        raise DependencyError(
            f"These packages are still not installed: {', '.join(names)}. Slicer may be in testing mode "
            "(installs are skipped there), or pip installed them elsewhere; install them from the Python "
            "console with slicer.util.pip_install(...) and restart Slicer."
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


def _install_packages(requirements: list) -> None:
    import slicer

    names = [str(r) for r in requirements]
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
                requester=REQUESTER,
            )
    except Exception as error:  # pip's CalledProcessError, a declined restart dialog, ...
        raise DependencyError(
            f"pip could not install {', '.join(names)} ({error}). Check the network connection and the "
            "Python console's log, then press Generate again."
        ) from error
