"""One import root: the installed distribution exposes exactly one top-level name, ``nassearch``, both in
the editable install the tests run from and in a wheel built from the source tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import distribution
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SOURCES = ("nassearch", "spaces", "searchers", "evaluators", "setup.cfg", "pyproject.toml", "README.md")
FOLDERS = ("spaces", "searchers", "evaluators")


def imports_from(cwd: Path, env_path: str | None = None) -> list[str]:
    """Where nassearch's subpackages import from, and which old top-level names import, run from ``cwd``
    (outside the repository, so the checkout itself is not on the path)."""
    code = ("import importlib.util, nassearch.spaces.darts, nassearch.searchers.nsga2, nassearch.evaluators.tabular\n"
            "print(nassearch.__file__)\n"
            f"print([n for n in {FOLDERS!r} if importlib.util.find_spec(n) is not None])")
    env = None if env_path is None else {"PYTHONPATH": env_path, "PATH": ""}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_installed_distribution_has_one_top_level_name(tmp_path):
    assert distribution("nassearch").read_text("top_level.txt").split() == ["nassearch"]
    where, old_names = imports_from(tmp_path)
    assert Path(where).parent == ROOT / "nassearch" and old_names == "[]"


@pytest.mark.slow
def test_a_built_wheel_installs_one_top_level_name(tmp_path):
    source = tmp_path / "source"
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                           if (ROOT / name).is_dir() else {}))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True, timeout=600)
    wheel, = (tmp_path / "dist").glob("nassearch-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert {n.split("/")[0] for n in names} == {"nassearch", wheel.name.split("-py")[0] + ".dist-info"}
    assert all(f"nassearch/{folder}/base.py" in names for folder in FOLDERS)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", str(wheel), "--no-deps", "-q", "--target", str(target)],
                   check=True, capture_output=True, timeout=600)
    top_level = sorted(p.name for p in target.iterdir() if p.name not in ("bin",) and not p.name.endswith(".dist-info"))
    assert top_level == ["nassearch"]
    site_packages = [p for p in sys.path if p.endswith("site-packages")]
    where, old_names = imports_from(tmp_path, ":".join([str(target), *site_packages]))
    assert Path(where).parent == target / "nassearch" and old_names == "[]"
