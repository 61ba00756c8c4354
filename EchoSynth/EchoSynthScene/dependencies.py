"""First-use installs inside Slicer: torch through the PyTorch extension, the rest from requirements.txt.

Nothing is installed at import. ``missing_requirements`` checks without Slicer (tested); ``ensure`` runs in
Slicer only. SimpleITK is Slicer's own and torch comes from the PyTorch extension: both are skipped so
pip never replaces them.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent.parent / "Resources" / "requirements.txt"
PROVIDED_BY_SLICER = ("SimpleITK", "torch")
REQUESTER = "EchoSynth"


def read_requirements(path: Path = REQUIREMENTS) -> list:
    """The requirements (``packaging`` Requirement objects) of a requirements file, comments skipped."""
    from packaging.requirements import Requirement

    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def missing_requirements(requirements: list) -> list[str]:
    """The requirements not installed, or installed at a version outside their specifier."""
    missing = []
    for requirement in requirements:
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(str(requirement))
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            missing.append(f"{requirement} (found {installed})")
    return missing


def torch_available() -> bool:
    """True if torch can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def ensure(ask: bool = True) -> bool:
    """Inside Slicer: install what is missing, after asking the user when ``ask``. False if declined or
    impossible (the user is told why)."""
    import slicer

    requirements = read_requirements()
    missing = missing_requirements(requirements)
    if torch_available() and not missing:
        return True
    what = (["torch (PyTorch extension)"] if not torch_available() else []) + missing
    if ask and not slicer.util.confirmOkCancelDisplay(
        "EchoSynth needs these Python packages, which will be installed now (this can take minutes):\n"
        + "\n".join(f"  {item}" for item in what),
        windowTitle="EchoSynth: install dependencies",
    ):
        return False
    if not torch_available() and not _install_torch():
        return False
    if missing:
        _pip_ensure(requirements)
    return True


def _install_torch() -> bool:
    try:
        import PyTorchUtils
    except ImportError:
        import slicer

        slicer.util.errorDisplay(
            "EchoSynth needs PyTorch: install the 'PyTorch' extension from the Extensions Manager, "
            "restart Slicer and try again."
        )
        return False
    return PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False) is not None


def _pip_ensure(requirements: list) -> None:
    import slicer

    pydeps = getattr(slicer, "pydeps", None) or getattr(slicer, "packaging", None)
    if pydeps is not None and hasattr(pydeps, "pip_ensure"):  # Slicer >= 5.11
        pydeps.pip_ensure(requirements, skip_packages=list(PROVIDED_BY_SLICER), requester=REQUESTER)
    else:  # older Slicer
        slicer.util.pip_install(" ".join(f'"{r}"' for r in requirements))
