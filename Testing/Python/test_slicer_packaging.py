"""Static checks on the Slicer side: light module imports, full CMake listings, no slicer in the library."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
# Modules Slicer itself provides: cheap to import when the module loads.
LIGHT_IMPORTS = {"slicer", "logging", "os", "sys", "qt", "ctk", "vtk", "typing", "time", "__future__"}


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


def _cmake_listed(cmake: Path) -> set[str]:
    text = cmake.read_text()
    block = re.search(r"set\(MODULE_PYTHON_SCRIPTS(.*?)\)", text, re.S).group(1)
    resources = re.search(r"set\(MODULE_PYTHON_RESOURCES(.*?)\)", text, re.S)
    items = block.split() + (resources.group(1).split() if resources else [])
    return {item.replace("${MODULE_NAME}", cmake.parent.name) for item in items}


def test_module_file_imports_nothing_heavy_at_top_level():
    heavy = _top_level_imports(ROOT / "EchoSynth" / "EchoSynth.py") - LIGHT_IMPORTS
    assert not heavy, f"EchoSynth.py imports {heavy} at load time"


def test_module_cmake_lists_every_file():
    module = ROOT / "EchoSynth"
    needed = {
        str(p.relative_to(module))
        for p in module.rglob("*")
        if p.is_file() and p.suffix in {".py", ".png", ".ui", ".txt"} and "__pycache__" not in p.parts
    } - {"CMakeLists.txt"}
    assert needed <= _cmake_listed(module / "CMakeLists.txt")


def test_library_cmake_lists_every_python_file():
    library = ROOT / "EchoSynthLib"
    needed = {str(p.relative_to(library)) for p in library.rglob("*.py") if "__pycache__" not in p.parts}
    assert needed == _cmake_listed(library / "CMakeLists.txt")


def test_extension_cmake_has_metadata_and_subdirectories():
    text = (ROOT / "CMakeLists.txt").read_text()
    for needed in (
        'EXTENSION_DEPENDS "PyTorch"',
        "add_subdirectory(EchoSynth)",
        "add_subdirectory(EchoSynthLib)",
        "Slicer_EXTENSION_GENERATE_CONFIG",
        "Slicer_EXTENSION_CPACK",
        "Resources/Models",
    ):
        assert needed in text
    module = (ROOT / "EchoSynth" / "CMakeLists.txt").read_text()
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in module
    assert "WITH_GENERIC_TESTS" in module


def _ui_widgets() -> dict[str, ET.Element]:
    tree = ET.parse(ROOT / "EchoSynth" / "Resources" / "UI" / "EchoSynth.ui")  # parses, or the test fails
    assert tree.getroot().tag == "ui"
    return {w.get("name"): w for w in tree.iter("widget")}


def test_the_widget_uses_only_widgets_that_the_ui_defines():
    used = set(re.findall(r"self\.ui\.(\w+)", (ROOT / "EchoSynth" / "EchoSynth.py").read_text()))
    assert used, "the widget uses no .ui widgets"
    assert used <= set(_ui_widgets()), f"missing in EchoSynth.ui: {used - set(_ui_widgets())}"


def test_slicer_requirements_have_lower_bounds_and_leave_torch_and_simpleitk_alone():
    from EchoSynthScene.dependencies import PROVIDED_BY_SLICER, missing_requirements, read_requirements

    requirements = read_requirements()
    names = {r.name.lower() for r in requirements}
    assert not names & {n.lower() for n in PROVIDED_BY_SLICER}
    for requirement in requirements:
        assert [s.operator for s in requirement.specifier] == [">="], requirement
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    library = {re.split(r"[<>=!~ ]", d)[0].lower() for d in pyproject} - {"torch", "simpleitk"}
    assert library == names  # the library's own needs, nothing more or less
    assert missing_requirements(requirements) == []  # the test environment has them all
    from packaging.requirements import Requirement

    assert missing_requirements([Requirement("numpy>=999")])[0].startswith("numpy>=999 (found")
    absent = "no-such-package-echosynth>=1"
    assert missing_requirements([Requirement(absent)]) == [absent]


def test_library_never_imports_slicer_or_qt():
    for path in (ROOT / "EchoSynthLib").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in {"slicer", "qt", "ctk", "PythonQt"} for n in names), path


def test_the_library_and_the_simulator_path_import_no_torch_or_monai(tmp_path):
    """Measured in a fresh process: importing the library and the CLI, then phantom, simulate and
    synthesize with the simulator (what Slicer runs without installing anything)."""
    import subprocess
    import sys

    code = f"""
import sys
import EchoSynthLib, EchoSynthLib.cli.main, EchoSynthLib.store.families
from EchoSynthLib.cli.main import main
heavy = ("torch", "monai", "diffusers")
print(any(m in sys.modules for m in heavy))
assert main(["phantom", "--size", "48", "--out", r"{tmp_path}/map.nii.gz"]) == 0
assert main(["simulate", r"{tmp_path}/map.nii.gz", "--out", r"{tmp_path}/sim.nii.gz"]) == 0
maps = r"{tmp_path}/map.nii.gz"
assert main(["synthesize", "--model", "simulator", "--labels", maps, "--out", r"{tmp_path}/out"]) == 0
print(sorted(m for m in heavy if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "False" and lines[-1] == "[]", result.stdout


def test_extensions_index_entry_matches_the_cmake_metadata():
    """EchoSynth.json in the catalog-entry schema v1.0.2 (additionalProperties false), consistent with
    CMakeLists.txt as the Extensions Index checks require, and a LICENSE file at the root."""
    import json

    entry = json.loads((ROOT / "EchoSynth.json").read_text())
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "dicom_support_rule", "build_subdirectory", "enabled", "tier"}  # fmt: skip
    assert {"$schema", "category", "scm_url"} <= set(entry) <= allowed
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"project\((\w+)\)", cmake).group(1) == "EchoSynth"  # the entry is named after it
    depends = re.search(r'set\(EXTENSION_DEPENDS "([^"]*)"\)', cmake).group(1).split()
    assert entry["build_dependencies"] == depends
    assert entry["category"] == re.search(r'set\(EXTENSION_CATEGORY "([^"]*)"\)', cmake).group(1)
    assert isinstance(entry["tier"], int) and 1 <= entry["tier"] <= 5
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    description = re.search(r'set\(EXTENSION_DESCRIPTION "([^"]*)"\)', cmake).group(1)
    assert "5.10 or later" in description and "translat" not in description  # no promise of what is missing
