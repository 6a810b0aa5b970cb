"""DESIGN.md's floors: a module imports only modules of ours on a lower floor; entry points never import each other."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "asr"
FLOORS = {
    "files": 0, "config": 0, "download": 0,                       # helpers that know nothing of speech
    "audio": 1, "text": 1, "plotting": 1,                         # leaves
    "features": 2, "model": 2, "decoding": 2, "metrics": 2,       # pipeline stages
    "data": 3, "bundle": 3,                                       # built on the stages
    "train": 4, "transcribe": 4, "evaluate": 4,                   # entry points
}


def imported_modules(path: Path) -> set[str]:
    """Our modules that `path` imports anywhere (top level or inside functions); `asr` itself is not counted."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("asr."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "asr":
            found |= {a.name for a in node.names if a.name in FLOORS}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("asr.")}
    return found


def test_every_module_has_a_floor():
    assert {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"} == set(FLOORS)


def test_modules_import_only_lower_floors():
    upward = {(p.stem, dep) for p in PACKAGE.glob("*.py") if p.stem in FLOORS
              for dep in imported_modules(p) if FLOORS[dep] >= FLOORS[p.stem]}
    assert not upward
