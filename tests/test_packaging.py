"""Layout rules: one import package `voiceguard`, no top-level detect/eval/watermark modules."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from helpers import REPO

CODE_FOLDERS = {"voiceguard": "voiceguard", "detect": "voiceguard.detect", "watermark": "voiceguard.watermark",
                "eval": "voiceguard.eval", "demo": "voiceguard.demo",
                "configs": "voiceguard.configs"}


def test_every_code_folder_is_a_listed_subpackage():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages, mapping = set(cfg["packages"]), cfg["package-dir"]
    expected = set()
    for folder, pkg in CODE_FOLDERS.items():
        assert mapping[pkg] == folder
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            expected.add(".".join((pkg, *rel)))
    missing = expected - packages
    assert not missing, f"pyproject packages miss {missing}"
    # the others are data-only folders (no __init__.py), listed so that setuptools ships them
    # without its "Package would be ignored" warning; each must exist and hold package data
    for pkg in packages - expected:
        top = max((folder for folder, name in CODE_FOLDERS.items() if pkg.startswith(name + ".")),
                  key=lambda folder: len(CODE_FOLDERS[folder]))
        folder = REPO / top / Path(*pkg.split(".")[len(CODE_FOLDERS[top].split(".")):])
        assert folder.is_dir() and not (folder / "__init__.py").exists(), pkg
        assert pkg in cfg["package-data"], f"{pkg}: data folder without package-data"


def test_wheel_builds_without_setuptools_warnings(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v",
                        str(REPO), "-w", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "_Warning" not in r.stdout + r.stderr and "SetuptoolsDeprecationWarning" not in r.stdout + r.stderr


def test_no_top_level_detect_eval_watermark(tmp_path):
    code = ("import importlib.util as u, voiceguard.metrics.cm, voiceguard.detect, voiceguard.watermark;"
            "print([n for n in ('detect', 'eval', 'watermark', 'demo', 'configs') if u.find_spec(n)])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


def test_the_lock_file_is_compiled_from_the_current_dependencies(tmp_path, monkeypatch):
    """requirements.lock ends with the digest of pyproject.toml's dependency tables + requirements.in
    (.ci/lock_inputs.py); .ci/setup.sh refuses a lock whose digest is stale. Editing a dependency changes it."""
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("lock_inputs", REPO / ".ci" / "lock_inputs.py")
    li = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(li)
    assert li.recorded() == li.digest()
    for name in ("pyproject.toml", "requirements.in", "requirements.lock"):
        shutil.copy(REPO / name, tmp_path / name)
    monkeypatch.setattr(li, "ROOT", tmp_path)
    assert li.recorded() == li.digest()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"click>=8.1"', '"click>=8.2"'))
    assert li.recorded() != li.digest()
