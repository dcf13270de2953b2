"""The digest of what requirements.lock is compiled from: pyproject.toml's dependency tables (requires-python,
dependencies, optional-dependencies) and requirements.in.  `bash .ci/lock.sh` writes it as the lock's last line;
`.ci/setup.sh` refuses to install from a lock whose line does not match (a dependency edited without
regenerating the lock).  Usage: python3 .ci/lock_inputs.py [--check]"""
from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "# lock inputs sha256: "


def digest() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    inputs = {k: project.get(k) for k in ("requires-python", "dependencies", "optional-dependencies")}
    inputs["requirements.in"] = (ROOT / "requirements.in").read_text()
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def recorded() -> str | None:
    lines = [l for l in (ROOT / "requirements.lock").read_text().splitlines() if l.startswith(PREFIX)]
    return lines[-1][len(PREFIX):].strip() if lines else None


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        if recorded() != digest():
            sys.exit("requirements.lock is out of date with pyproject.toml / requirements.in: "
                     "run `bash .ci/lock.sh` and commit the lock")
    else:
        print(PREFIX + digest())
