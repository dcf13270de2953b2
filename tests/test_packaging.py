"""Layout rules: one import package `voiceguard`, no top-level detect/eval/watermark modules."""
from __future__ import annotations

import subprocess
import sys
import tomllib

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
    assert expected == packages, f"pyproject packages differ: missing {expected - packages}, extra {packages - expected}"


def test_no_top_level_detect_eval_watermark(tmp_path):
    code = ("import importlib.util as u, voiceguard.eval.metrics, voiceguard.detect, voiceguard.watermark;"
            "print([n for n in ('detect', 'eval', 'watermark', 'demo', 'configs') if u.find_spec(n)])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr
