"""First-use installs against a fake Slicer that behaves like the real one where it matters.

The fake ``slicer`` package has ``packaging`` as a submodule file that becomes an attribute only once
imported (Slicer's ``slicer/__init__.py`` does not import its submodules), a ``pip_ensure`` with the
signature and testing-mode skip of ``Base/Python/slicer/packaging.py``, and a ``PyTorchUtils`` with
``installTorch(askConfirmation, forceComputationBackend, torchVersionRequirement, ...)`` as in
fepegar/SlicerPyTorch. What is "installed" is a dict the fakes fill, read through the module's one
metadata lookup. A simulator worker is also run with every package Slicer lacks made unimportable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from EchoSynthScene import dependencies
from EchoSynthScene.dependencies import DependencyError, Needs, ensure, missing_for, needs_for

FAKE_PACKAGING = """
import slicer

def pip_ensure(requirements, constraints=None, skip_packages=None, prompt_install=True, prompt_restart=True,
               requester=None, skip_in_testing=True, show_progress=True):
    slicer.calls.append(("pip_ensure", [str(r) for r in requirements],
                         dict(skip_packages=skip_packages, prompt_install=prompt_install, requester=requester,
                              skip_in_testing=skip_in_testing)))
    if skip_in_testing and slicer.app.testingEnabled():
        return None  # what real Slicer does in testing mode: nothing installed, no error
    if slicer.pip_fails:
        raise RuntimeError("pip exited with status 1")
    for requirement in requirements:
        slicer.installed[str(requirement).split(">")[0].split("=")[0]] = "99.0"
    return [] if skip_packages is not None else None
"""


class FakeUtil:
    def __init__(self, fake):
        self.fake = fake

    def confirmOkCancelDisplay(self, text, windowTitle=None, **kwargs):
        self.fake.calls.append(("confirm", text))
        return self.fake.answer

    def pip_install(self, requirements):
        self.fake.calls.append(("pip_install", list(requirements)))
        for requirement in requirements:
            self.fake.installed[requirement.split(">")[0]] = "99.0"


def _fake_slicer(tmp_path: Path, with_packaging: bool, testing: bool = False) -> types.ModuleType:
    package = tmp_path / "fake_slicer" / "slicer"
    package.mkdir(parents=True)
    if with_packaging:
        (package / "packaging.py").write_text(FAKE_PACKAGING)
    fake = types.ModuleType("slicer")
    fake.__path__ = [str(package)]
    fake.calls, fake.installed, fake.answer, fake.pip_fails = [], {}, True, False
    fake.util = FakeUtil(fake)
    fake.app = types.SimpleNamespace(testingEnabled=lambda: testing)
    return fake


def _fake_pytorch_utils(fake, version: str | None = "2.9.0", fails: bool = False) -> types.ModuleType:
    class PyTorchUtilsLogic:
        def installTorch(
            self,
            askConfirmation=False,
            forceComputationBackend=None,
            torchVersionRequirement=None,
            torchvisionVersionRequirement=None,
        ):
            fake.calls.append(("installTorch", askConfirmation, torchVersionRequirement))
            if fails:
                raise OSError("no network")
            if version is None:
                return None
            fake.installed["torch"] = version
            return types.ModuleType("torch")

    module = types.ModuleType("PyTorchUtils")
    module.PyTorchUtilsLogic = PyTorchUtilsLogic
    return module


@pytest.fixture
def slicer_env(tmp_path, monkeypatch):
    """A fake Slicer >= 5.11 with nothing of EchoSynth's installed; returns a function to rebuild it."""

    def make(with_packaging=True, testing=False, torch=True, torch_fails=False):
        fake = _fake_slicer(tmp_path / str(len(made)), with_packaging, testing)
        monkeypatch.setitem(sys.modules, "slicer", fake)
        monkeypatch.delitem(sys.modules, "slicer.packaging", raising=False)
        if torch:
            monkeypatch.setitem(sys.modules, "PyTorchUtils", _fake_pytorch_utils(fake, fails=torch_fails))
        else:
            monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # import fails: no PyTorch extension
        monkeypatch.setattr(dependencies, "_installed", lambda name: fake.installed.get(name))
        made.append(fake)
        return fake

    made: list = []
    return make


def test_the_simulator_needs_nothing_and_installs_nothing(slicer_env):
    fake = slicer_env()
    assert needs_for("simulator").nothing
    ensure(needs_for("simulator"), ask=True)
    assert fake.calls == []


def test_augmentation_needs_torch_and_monai_only():
    needs = needs_for("simulator", augment=2)
    assert needs.torch and [r.name for r in needs.requirements] == ["monai"]
    assert [r.name for r in needs_for("simulator", extra=("tqdm",)).requirements] == ["tqdm"]
    model = needs_for("my-model")
    assert model.torch and {r.name for r in model.requirements} >= {"monai", "safetensors", "diffusers"}


def test_a_model_run_asks_once_then_installs_torch_and_the_rest(slicer_env):
    fake = slicer_env()
    assert not hasattr(fake, "packaging")  # a submodule, not an attribute, until imported
    ensure(needs_for("my-model"), ask=True)
    kinds = [call[0] for call in fake.calls]
    assert kinds == ["confirm", "installTorch", "pip_ensure"]
    prompt = fake.calls[0][1]
    assert "torch>=2.8" in prompt and "GB" in prompt and "monai>=1.6: about 3 MB" in prompt
    assert fake.calls[1] == ("installTorch", False, dependencies.TORCH_REQUIREMENT)
    _, requirements, options = fake.calls[2]
    assert options["prompt_install"] is False and options["requester"] == "EchoSynth"
    assert {"torch", "SimpleITK"} <= set(options["skip_packages"])
    assert not any(r.lower().startswith(("torch", "simpleitk")) for r in requirements)
    assert missing_for(needs_for("my-model")).nothing
    fake.calls.clear()
    ensure(needs_for("my-model"), ask=True)  # everything there now: no question, no install
    assert fake.calls == []


def test_augmentation_installs_only_monai_after_torch(slicer_env):
    fake = slicer_env()
    ensure(needs_for("simulator", augment=1), ask=False)
    assert [c[0] for c in fake.calls] == ["installTorch", "pip_ensure"]
    assert fake.calls[1][1] == ["monai>=1.6"]


def test_a_refusal_is_an_error_and_installs_nothing(slicer_env):
    fake = slicer_env()
    fake.answer = False
    with pytest.raises(DependencyError, match="declined"):
        ensure(needs_for("my-model"), ask=True)
    assert [c[0] for c in fake.calls] == ["confirm"]
    assert "torch" not in fake.installed


def test_a_pip_failure_is_an_error(slicer_env):
    fake = slicer_env()
    fake.pip_fails = True
    with pytest.raises(DependencyError, match=r"pip could not install.*status 1"):
        ensure(needs_for("simulator", augment=1), ask=False)


def test_a_skipped_install_in_testing_mode_is_not_a_success(slicer_env):
    slicer_env(testing=True)
    with pytest.raises(DependencyError, match="still not installed: monai"):
        ensure(needs_for("simulator", augment=1), ask=False)


def test_slicer_5_10_installs_through_pip_install(slicer_env):
    fake = slicer_env(with_packaging=False)
    ensure(Needs(False, tuple(needs_for("simulator", extra=("tqdm", "einops")).requirements)), ask=False)
    assert fake.calls == [("pip_install", ["einops>=0.7", "tqdm>=4.66"])]


def test_torch_problems_say_what_to_do(slicer_env):
    slicer_env(torch=False)
    with pytest.raises(DependencyError, match="install the 'PyTorch' extension from the Extensions Manager"):
        ensure(needs_for("simulator", augment=1), ask=False)
    slicer_env(torch_fails=True)
    with pytest.raises(DependencyError, match=r"PyTorch could not be installed .no network"):
        ensure(needs_for("simulator", augment=1), ask=False)
    old = slicer_env()
    old.installed["torch"] = "2.1.0"
    with pytest.raises(DependencyError, match=r"torch 2.1.0 is older.*PyTorch Utils"):
        ensure(needs_for("simulator", augment=1), ask=False)
    assert old.calls == []


BLOCKER = """
import importlib.abc, sys
from pathlib import Path

BLOCKED = {blocked!r}
Path({marker!r}).write_text("installed")

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            with open({marker!r}, "a") as log:
                log.write(" " + name)
            raise ImportError(f"{{name}} is not installed (blocked by the test)")
        return None

sys.meta_path.insert(0, Blocker())
"""


def test_the_simulator_worker_needs_nothing_that_slicer_lacks(tmp_path):
    """torch, MONAI, diffusers and every other requirements.txt package unimportable in the worker."""
    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
    from EchoSynthLib.data.io import write_label_map
    from EchoSynthLib.jobs.process import JobProcess
    from EchoSynthLib.jobs.spec import JobSpec, read_result

    needed = {r.name for r in dependencies.read_requirements()} - set(dependencies.SLICER_BUNDLED)
    blocked = sorted({"torch", "monai", "diffusers", "cv2", *needed})
    hooks, marker = tmp_path / "hooks", tmp_path / "blocked.log"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(BLOCKER.format(blocked=blocked, marker=str(marker)))
    job = tmp_path / "job"
    job.mkdir()
    labels = phantom_label_map("4CH", "ES", seed=5, grid=PhantomGrid.for_view("4CH", size=40)).labels
    write_label_map(labels, job / "in.nrrd")
    JobSpec(inputs=("in.nrrd",), n=2).write(job)
    worker = JobProcess(job, env={**os.environ, "PYTHONPATH": str(hooks)})
    worker.wait(timeout=120)
    assert marker.read_text().startswith("installed")  # the hook ran in the worker
    results, _ = read_result(job)
    assert len(results[0].images) == 2 and all((job / p).is_file() for p in results[0].images)
    # The headless batch script (the CLI) with the simulator needs only tqdm besides.
    cli_hooks = tmp_path / "cli-hooks"
    cli_hooks.mkdir()
    cli_blocked = [name for name in blocked if name != "tqdm"]
    (cli_hooks / "sitecustomize.py").write_text(BLOCKER.format(blocked=cli_blocked, marker=str(marker)))
    write_label_map(labels, tmp_path / "map.nii.gz")
    batch = Path(__file__).parents[2] / "EchoSynth" / "Resources" / "Scripts" / "batch_synthesize.py"
    arguments = ["--model", "simulator", "--labels", str(tmp_path / "map.nii.gz")]
    arguments += ["--out", str(tmp_path / "b")]
    done = subprocess.run(
        [sys.executable, str(batch), *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(cli_hooks)},
    )
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "installed" and (tmp_path / "b" / "map_synth00.nii.gz").is_file()
    # The same hook does stop what needs those packages: augmentation fails with the hook's message.
    augment_job = tmp_path / "augment"
    augment_job.mkdir()
    write_label_map(labels, augment_job / "in.nrrd")
    JobSpec(inputs=("in.nrrd",), augment=1).write(augment_job)
    failing = subprocess.run(
        [sys.executable, "-m", "EchoSynthLib.jobs.worker", str(augment_job)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(hooks), str(Path(__file__).parents[2])])},
    )
    assert failing.returncode != 0 and "blocked by the test" in failing.stdout + failing.stderr
