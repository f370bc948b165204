"""The layers contract in pyproject.toml (webapp -> backend -> vla_core -> storage) holds, and the check can fail.

`lint-imports` (import-linter) reads `[tool.importlinter]` from the pyproject.toml in its working directory and
builds the import graph of the real packages, indirect imports included.
"""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
LAYERS = ["webapp", "backend", "vla_core", "storage"]


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    # lint-imports finds the packages on sys.path: the working directory is put first.
    env = {"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True)


def test_the_contract_is_the_documented_order():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = config["contracts"]
    assert contract["type"] == "layers" and contract["layers"] == LAYERS
    assert sorted(config["root_packages"]) == sorted(LAYERS)


def test_no_import_points_up():
    result = _lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_fails_the_check(tmp_path):
    """A storage module importing webapp, even through vla_core, breaks the contract (so CI would go red)."""
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
        (tmp_path / layer / "__init__.py").write_text("")
    (tmp_path / "webapp" / "app.py").write_text("import backend\n")
    (tmp_path / "vla_core" / "helper.py").write_text("from webapp import app\n")  # the arrow that points up
    (tmp_path / "storage" / "db.py").write_text("from vla_core import helper\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "vla_core.helper -> webapp.app" in result.stdout
