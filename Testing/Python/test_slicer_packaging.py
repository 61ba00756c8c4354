"""Static checks on the Slicer side: light module imports, full CMake listings, no slicer in the library."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Modules Slicer itself provides: cheap to import when the module loads.
LIGHT_IMPORTS = {"slicer", "logging", "os", "qt", "ctk", "vtk", "typing", "__future__"}


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
        if p.is_file() and p.suffix in {".py", ".png", ".ui"}
    }
    assert needed <= _cmake_listed(module / "CMakeLists.txt")


def test_library_cmake_lists_every_python_file():
    library = ROOT / "EchoSynthLib"
    needed = {str(p.relative_to(library)) for p in library.rglob("*.py")}
    assert needed == _cmake_listed(library / "CMakeLists.txt")


def test_extension_cmake_has_metadata_and_subdirectories():
    text = (ROOT / "CMakeLists.txt").read_text()
    for needed in (
        'EXTENSION_DEPENDS "PyTorch"',
        "add_subdirectory(EchoSynth)",
        "add_subdirectory(EchoSynthLib)",
        "Slicer_EXTENSION_GENERATE_CONFIG",
        "Slicer_EXTENSION_CPACK",
    ):
        assert needed in text


def test_library_never_imports_slicer_or_qt():
    for path in (ROOT / "EchoSynthLib").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in {"slicer", "qt", "ctk", "PythonQt"} for n in names), path


def test_importing_the_library_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, EchoSynthLib, EchoSynthLib.cli.main; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
