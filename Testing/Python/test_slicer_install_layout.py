"""The extension as Slicer installs it: the files the CMake lists name, laid out the way Slicer's macros put
them, then used from that tree alone (module registration, resources, models folder, a worker job).

The layout rules, from Slicer's ``CMake/SlicerMacroBuildScriptedModule.cmake`` and CTK's
``ctkMacroCompilePythonScript.cmake``: every SCRIPTS and RESOURCES entry keeps its relative path under
``qt-scripted-modules``, or under ``qt-scripted-modules/<folder of the CMakeLists>`` with ``WITH_SUBDIR``.
Slicer registers only the ``.py`` files at the top level of ``qt-scripted-modules``
(``qSlicerAbstractModuleFactoryManager::registerModules``) and puts that folder on ``sys.path``
(``qSlicerScriptedLoadableModuleFactory``). Written by hand: no Slicer build is available to CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTED = "qt-scripted-modules"


def _cmake_list(text: str, variable: str) -> list[str]:
    found = re.search(rf"set\({variable}(.*?)\)", text, re.S)
    return found.group(1).split() if found else []


def _macro_arguments(text: str) -> list[str]:
    found = re.search(r"slicerMacroBuildScriptedModule\((.*?)\)", text, re.S)
    assert found, "no slicerMacroBuildScriptedModule call"
    return found.group(1).split()


def install_module(folder: Path, tree: Path) -> None:
    """Copy one scripted module's SCRIPTS and RESOURCES into ``tree`` as Slicer's macro installs them."""
    text = (folder / "CMakeLists.txt").read_text()
    name = re.search(r"set\(MODULE_NAME (\w+)\)", text).group(1)
    destination = tree / SCRIPTED
    if "WITH_SUBDIR" in _macro_arguments(text):
        destination = destination / folder.name
    scripts = _cmake_list(text, "MODULE_PYTHON_SCRIPTS")
    resources = _cmake_list(text, "MODULE_PYTHON_RESOURCES")
    for entry in scripts + resources:
        relative = entry.replace("${MODULE_NAME}", name)
        if entry in scripts and not relative.endswith(".py"):
            relative += ".py"  # ctkMacroCompilePythonScript appends the extension
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / relative, target)


def install_extension(tree: Path) -> Path:
    """Lay out the whole extension as installed; returns its ``qt-scripted-modules`` folder."""
    top = (ROOT / "CMakeLists.txt").read_text()
    for sub in re.findall(r"add_subdirectory\((\w+)\)", top):
        install_module(ROOT / sub, tree)
    # install(DIRECTORY Resources/Models DESTINATION ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/Resources)
    pattern = r"install\(DIRECTORY (\S+)\s+DESTINATION \$\{Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR\}/(\S+)"
    models = re.search(pattern, top)
    assert models, "the top-level CMakeLists.txt does not install the models folder"
    source, where = models.groups()
    shutil.copytree(ROOT / source, tree / SCRIPTED / where / Path(source).name)
    return tree / SCRIPTED


def registered_modules(scripted: Path) -> list[str]:
    """The scripted modules Slicer would register from this folder (top-level .py files only)."""
    return sorted(p.stem for p in scripted.iterdir() if p.is_file() and p.suffix == ".py")


def test_the_module_target_is_built_without_a_subfolder():
    arguments = _macro_arguments((ROOT / "EchoSynth" / "CMakeLists.txt").read_text())
    assert "WITH_SUBDIR" not in arguments  # the module must install at the top of qt-scripted-modules
    assert "WITH_SUBDIR" in _macro_arguments((ROOT / "EchoSynthLib" / "CMakeLists.txt").read_text())


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    return install_extension(tmp_path_factory.mktemp("slicer-install"))


def test_slicer_registers_the_module_and_finds_its_resources(installed):
    assert registered_modules(installed) == ["EchoSynth"]
    # ScriptedLoadableModule.resourcePath: <folder of the module file>/Resources/<name>
    resources = ("UI/EchoSynth.ui", "Icons/EchoSynth.png", "requirements.txt", "Scripts/batch_synthesize.py")
    for resource in resources:
        assert (installed / "Resources" / resource).is_file(), resource
    assert (installed / "Resources" / "Models" / "manifest.json").is_file()
    assert (installed / "EchoSynthScene" / "synthesis.py").is_file()
    assert (installed / "EchoSynthLib" / "jobs" / "worker.py").is_file()


CHILD = r"""
import json, sys
from pathlib import Path

tree = Path(sys.argv[1])
sys.path.append(str(tree))  # what Slicer's scripted-module factory does
import EchoSynthLib, EchoSynthScene
from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.data.io import read_image, write_label_map
from EchoSynthLib.jobs.launcher import JobProcess, library_root
from EchoSynthLib.jobs.spec import JobSpec, read_result
from EchoSynthLib.store import registry
from EchoSynthScene import dependencies
from EchoSynthScene.models import generator_choices

job = Path(sys.argv[2])
labels = phantom_label_map("4CH", "ED", seed=1, grid=PhantomGrid.for_view("4CH", size=40)).labels
write_label_map(labels, job / "in.nrrd")
JobSpec(inputs=("in.nrrd",), n=2).write(job)
JobProcess(job).wait(timeout=120)
results, _ = read_result(job)
image = read_image(job / results[0].images[1])
print(json.dumps({
    "library": EchoSynthLib.__file__,
    "scene": EchoSynthScene.__file__,
    "library_root": str(library_root()),
    "models_dir": str(registry.MODELS_DIR),
    "manifest": len(registry.read_manifest()) >= 0,
    "requirements": str(dependencies.REQUIREMENTS),
    "choices": [c.spec for c in generator_choices()],
    "images": [len(r.images) for r in results],
    "same_grid": image.same_geometry(labels),
}))
"""


def test_a_job_runs_from_the_installed_tree_alone(installed, tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["ECHOSYNTH_CACHE_DIR"] = str(tmp_path / "cache")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(installed), str(job)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert Path(report["library"]).is_relative_to(installed)  # not the checkout's copy
    assert Path(report["scene"]).is_relative_to(installed)
    assert Path(report["library_root"]) == installed  # the worker's PYTHONPATH
    assert Path(report["models_dir"]) == installed / "Resources" / "Models"
    assert Path(report["requirements"]) == installed / "Resources" / "requirements.txt"
    assert report["choices"][0] == "simulator"
    assert report["images"] == [2] and report["same_grid"]


def test_the_batch_script_runs_from_the_installed_tree(installed, tmp_path):
    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
    from EchoSynthLib.data.io import write_label_map

    labels = phantom_label_map("2CH", "ES", seed=2, grid=PhantomGrid.for_view("2CH", size=40)).labels
    write_label_map(labels, tmp_path / "a.nii.gz")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(installed)
    script = installed / "Resources" / "Scripts" / "batch_synthesize.py"
    command = [sys.executable, str(script), "--model", "simulator", "--labels", str(tmp_path / "a.nii.gz")]
    done = subprocess.run([*command, "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_synth00.nii.gz"]
