"""The tree reads as the pipeline: imports point down the stack (entry points → jobs → runtime/config and
evaluation → cams/bls/metrics → models/data → store; reporting below jobs), and reporting never reaches the CAM
engine."""
from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.conftest import REPO

# What each stage package may import from src (besides itself).
ALLOWED = {
    "store": set(),  # the bottom: files, locks, keys
    "data": {"store"},
    "models": set(),
    "bls": {"store"},
    "cams": {"bls", "models"},
    "metrics": set(),
    "evaluation": {"cams", "data", "metrics", "models", "store"},
    "reporting": {"data", "metrics", "store"},
    "config": {"store"},  # Hydra glue
    "runtime": {"config", "data", "store"},
    "jobs": {"bls", "cams", "config", "data", "evaluation", "metrics", "models", "reporting", "runtime", "store"},
}
ENTRY_POINTS = {path.stem for path in (REPO / "src").glob("*.py") if path.stem != "__init__"}


def src_imports(package: str) -> set[str]:
    """The `src.<name>` modules imported anywhere in src/<package>/ (top-level names)."""
    found = set()
    for path in (REPO / "src" / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            found.update(name.split(".")[1] for name in names if name.startswith("src."))
    return found - {package}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_stage_packages_import_only_below_them(package):
    imported = src_imports(package)
    assert not imported & ENTRY_POINTS, f"src/{package} imports an entry point: {imported & ENTRY_POINTS}"
    assert imported <= ALLOWED[package], f"src/{package} imports {sorted(imported - ALLOWED[package])}"


def test_top_level_of_src_holds_entry_points_only():
    assert ENTRY_POINTS == {"run", "demo"} | {p.stem for p in (REPO / "src").glob("*.py") if "__main__" in p.read_text()}
    assert {p.name for p in (REPO / "src").iterdir() if p.is_dir() and p.name != "__pycache__"} == set(ALLOWED)


def test_reporting_does_not_load_the_cam_engine():
    code = ("import sys, src.reporting.report, src.reporting.wandb_logging, src.reporting.figures; "
            "print(sorted(m for m in sys.modules if m.startswith(('src.cams', 'src.jobs', 'src.evaluation'))))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
