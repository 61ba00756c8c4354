"""First-use installs against a fake Slicer that behaves like the real one where it matters.

The fake ``slicer`` package has ``packaging`` as a submodule file that becomes an attribute only once
imported (Slicer's ``slicer/__init__.py`` does not import its submodules), a ``pip_ensure`` with the
signature and testing-mode skip of ``Base/Python/slicer/packaging.py``, and a ``PyTorchUtils`` with
``installTorch(askConfirmation, forceComputationBackend, torchVersionRequirement, ...)`` as in
fepegar/SlicerPyTorch. What is "installed" is a dict the fakes fill, and what each package declares
another dict, read through the module's two metadata lookups (version, requires). A simulator worker is
also run with every package Slicer lacks made unimportable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from EchoSynthScene import dependencies
from EchoSynthScene.dependencies import (
    DependencyError,
    Needs,
    ensure,
    install_message,
    missing_for,
    needs_for,
)

FAKE_PACKAGING = """
import slicer

def pip_ensure(requirements, constraints=None, skip_packages=None, prompt_install=True, prompt_restart=True,
               requester=None, skip_in_testing=True, show_progress=True):
    slicer.calls.append(("pip_ensure", [str(r) for r in requirements],
                         dict(skip_packages=skip_packages, prompt_install=prompt_install, requester=requester,
                              skip_in_testing=skip_in_testing, prompt_restart=prompt_restart,
                              show_progress=show_progress)))
    if skip_in_testing and slicer.app.testingEnabled():
        return None  # what real Slicer does in testing mode: nothing installed, no error
    if slicer.pip_fails:
        raise RuntimeError("pip exited with status 1")
    for requirement in requirements:
        name = str(requirement).split(">")[0].split("=")[0]
        if name not in slicer.unavailable:  # as Slicer's --no-deps walk: a failed dependency only warns
            slicer.installed[name] = "99.0"
    return [] if skip_packages is not None else None
"""


class FakeUtil:
    def __init__(self, fake):
        self.fake = fake

    def mainWindow(self):
        return self.fake.main_window

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
    fake.requires, fake.unavailable, fake.main_window = {}, set(), object()
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
        monkeypatch.setattr(dependencies, "_requires", lambda name: fake.requires.get(name, []))
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


# What sampling imports (grep, and a worker run with the rest blocked): MONAI (networks, schedulers),
# safetensors (weights), einops (MONAI's attention blocks), slicerio (.seg.nrrd outputs), numpy and scipy.
SAMPLING = {"monai", "numpy", "scipy", "safetensors", "einops", "slicerio"}
COMMAND_LINE_ONLY = {"matplotlib", "scikit-learn", "opencv-python-headless", "tqdm"}


def _names(needs: Needs) -> set[str]:
    return {r.name for r in needs.requirements}


def test_the_simulator_needs_nothing_whatever_the_sampler(slicer_env, monkeypatch):
    fake = slicer_env()
    monkeypatch.setattr(dependencies, "_requires", lambda name: pytest.fail(f"read the metadata of {name}"))
    for sampler in (None, "dpm++sde", "ddim"):
        needs = needs_for("simulator", sampler=sampler)
        assert needs.nothing and missing_for(needs).nothing
        ensure(needs, ask=True)
    assert fake.calls == []


def test_a_model_run_gets_what_sampling_imports_and_diffusers_only_for_its_samplers():
    for sampler in ("ddim", "ddpm", "rflow"):
        needs = needs_for("my-model", sampler=sampler)
        assert needs.torch and _names(needs) == SAMPLING, sampler
    for sampler in ("dpm++", "dpm++sde", None):  # None: the default sampler, dpm++sde
        assert _names(needs_for("my-model", sampler=sampler)) == SAMPLING | {"diffusers"}, sampler
    assert _names(needs_for("my-model", augment=2, sampler="ddim")) == SAMPLING
    assert not COMMAND_LINE_ONLY & _names(needs_for("my-model"))
    assert _names(needs_for("my-model", sampler="ddim", extra=("tqdm",))) == SAMPLING | {"tqdm"}


def test_a_model_family_without_a_sampler_never_needs_diffusers(tmp_path):
    torch = pytest.importorskip("torch")
    from EchoSynthLib.store.families import ADVERSARIAL, SDM
    from EchoSynthLib.store.package import save_package

    for family in (ADVERSARIAL, SDM):
        save_package(tmp_path / family.name, family.kind, {}, {"w": torch.zeros(1)}, "card")
    assert _names(needs_for(str(tmp_path / "adversarial"))) == SAMPLING  # the translators
    assert _names(needs_for(str(tmp_path / "sdm"))) == SAMPLING | {"diffusers"}
    assert _names(needs_for(str(tmp_path / "sdm"), sampler="ddim")) == SAMPLING


@pytest.mark.parametrize("sampler", ["ddim", "dpm++", "dpm++sde"])
def test_exactly_the_diffusers_samplers_import_diffusers(monkeypatch, sampler):
    torch = pytest.importorskip("torch")
    from EchoSynthLib.diffusion import EPSILON_SAMPLERS
    from EchoSynthLib.diffusion.samplers import solve
    from EchoSynthLib.diffusion.schedules import BetaSchedule

    assert set(dependencies.DIFFUSERS_SAMPLERS) <= set(EPSILON_SAMPLERS) == {"ddim", "dpm++", "dpm++sde"}
    monkeypatch.setitem(sys.modules, "diffusers", None)  # not installed

    def run():
        noise = torch.zeros(1, 1, 4, 4)
        return solve(
            lambda x, t: torch.zeros_like(x), noise, BetaSchedule(20), sampler, 2, [torch.Generator()]
        )

    if sampler in dependencies.DIFFUSERS_SAMPLERS:
        with pytest.raises(ImportError, match="diffusers"):
            run()
    else:
        assert run().shape == (1, 1, 4, 4)


def test_a_missing_dependency_of_an_installed_package_is_installed_or_reported(slicer_env):
    fake = slicer_env()
    needs = needs_for("my-model", sampler="dpm++sde")
    fake.installed.update({r.name: "99.0" for r in needs.requirements} | {"numpy": "2.4.0", "tqdm": "4.0"})
    fake.installed["torch"] = "2.9.0"
    fake.requires.update(
        {
            "diffusers": [
                "huggingface-hub>=0.34",
                "safetensors>=0.8.0",
                'only-with-an-extra; extra == "all"',
                'never-here; sys_platform == "no-such-platform"',
            ],
            "huggingface-hub": ["tqdm>=4.42.1"],
            "monai": ["torch>=2.8.0", "numpy<3.0,>=1.24"],  # torch: the PyTorch extension's
        }
    )
    missing = missing_for(needs)
    assert not missing.torch and [str(r) for r in missing.requirements] == ["huggingface-hub>=0.34"]
    assert "  huggingface-hub>=0.34 (needed by diffusers): about 1 MB" in install_message(missing)
    # pip "succeeds" without it (Slicer's --no-deps walk only warns): one line that says what to do.
    fake.unavailable = {"huggingface-hub"}
    with pytest.raises(DependencyError) as raised:
        ensure(needs, ask=False)
    message = str(raised.value)
    assert (
        "\n" not in message and "still not installed: huggingface-hub>=0.34 (needed by diffusers)" in message
    )
    assert "slicer.util.pip_install(['huggingface-hub>=0.34']) and restart Slicer" in message
    assert [c[1] for c in fake.calls] == [["huggingface-hub>=0.34"]]
    # Once installed, its own dependencies are walked: the old tqdm is offered to pip next.
    fake.unavailable, fake.calls[:] = {"tqdm"}, []
    with pytest.raises(DependencyError, match=r"tqdm>=4.42.1 \(needed by huggingface-hub; found 4.0\)"):
        ensure(needs, ask=False)
    assert [c[1] for c in fake.calls] == [["huggingface-hub>=0.34"], ["tqdm>=4.42.1"]]
    fake.unavailable, fake.calls[:] = set(), []
    ensure(needs, ask=False)
    assert [c[1] for c in fake.calls] == [["tqdm>=4.42.1"]] and missing_for(needs).nothing


def test_the_dependency_walk_reads_this_environments_metadata(monkeypatch):
    """Everything is installed here (from pyproject.toml): the walk finds nothing missing, and it does reach
    the dependencies of diffusers' own dependencies."""
    from packaging.utils import canonicalize_name

    read: list[str] = []
    real = dependencies._requires
    monkeypatch.setattr(
        dependencies, "_requires", lambda name: read.append(canonicalize_name(name)) or real(name)
    )
    assert missing_for(needs_for("my-model", sampler="dpm++")).nothing
    assert {"diffusers", "huggingface-hub", "monai", "slicerio"} <= set(read) and "torch" not in read


def test_without_a_main_window_no_dialog_is_shown(slicer_env):
    fake = slicer_env()
    fake.main_window = None  # Slicer --no-main-window (the batch script)
    ensure(needs_for("simulator", augment=1), ask=None)
    assert [c[0] for c in fake.calls] == ["installTorch", "pip_ensure"]  # not asked
    options = fake.calls[1][2]
    assert options["prompt_restart"] is False and options["show_progress"] is False
    assert options["prompt_install"] is False


def test_with_a_main_window_ask_none_asks_and_slicer_shows_its_dialogs(slicer_env):
    fake = slicer_env()
    ensure(needs_for("simulator", augment=1), ask=None)
    assert [c[0] for c in fake.calls] == ["confirm", "installTorch", "pip_ensure"]
    options = fake.calls[2][2]
    assert options["prompt_restart"] is True and options["show_progress"] is True
    quiet = slicer_env()
    ensure(needs_for("simulator", augment=1), ask=False)  # False still means: do not ask
    assert [c[0] for c in quiet.calls] == ["installTorch", "pip_ensure"]


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
    from EchoSynthLib.jobs.launcher import JobProcess
    from EchoSynthLib.jobs.spec import JobSpec, read_result

    needed = {r.name for r in dependencies.read_requirements()} - set(dependencies.SLICER_BUNDLED)
    blocked = sorted({"torch", "monai", "diffusers", "huggingface_hub", "cv2", "sklearn", *needed})
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
