"""The layering of README's architecture section: a module may import only its own layer or lower ones."""
from __future__ import annotations

import ast

from helpers import REPO

FOLDERS = {"voiceguard": "voiceguard", "detect": "voiceguard.detect", "watermark": "voiceguard.watermark",
           "eval": "voiceguard.eval", "demo": "voiceguard.demo",
           "configs": "voiceguard.configs"}


def layer_of(module: str) -> int:
    parts = module.split(".")
    if parts[-1] == "cli" or module.startswith("voiceguard.demo"):
        return 4
    if module.startswith(("voiceguard.eval.metrics", "voiceguard.eval.scores", "voiceguard.attacks")):
        return 1
    if module.startswith(("voiceguard.detect", "voiceguard.watermark")):
        return 2
    if module.startswith("voiceguard.eval"):
        return 3
    return 0  # voiceguard.audio, errors, protocols, files, writers, the package root


def modules():
    for folder, pkg in FOLDERS.items():
        for path in (REPO / folder).rglob("*.py"):
            rel = path.relative_to(REPO / folder).with_suffix("").parts
            name = ".".join((pkg, *rel))
            is_pkg = rel[-1] == "__init__"
            yield name.removesuffix(".__init__"), is_pkg, path


def imported(name: str, is_pkg: bool, path) -> set[str]:
    out = set()
    package = name if is_pkg else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # `from pkg import submodule`
    return {m for m in out if m.startswith("voiceguard")}


def test_no_upward_imports():
    known = {name for name, _, _ in modules()}
    # an empty package __init__ is a namespace, not code: importing through it costs nothing
    namespaces = {name for name, is_pkg, path in modules() if is_pkg and not imported(name, True, path)}
    violations = []
    for name, is_pkg, path in modules():
        own = layer_of(name)
        for mod in imported(name, is_pkg, path):
            if mod not in known and mod.rsplit(".", 1)[0] in known:
                mod = mod.rsplit(".", 1)[0]  # `from module import function`
            if mod in known and mod not in namespaces and layer_of(mod) > own:
                violations.append(f"{name} (layer {own}) imports {mod} (layer {layer_of(mod)})")
    assert not violations, "\n".join(violations)


def test_the_layer_map_sees_the_modules():
    names = {name for name, _, _ in modules()}
    assert {"voiceguard.audio", "voiceguard.eval.metrics", "voiceguard.attacks.base", "voiceguard.eval.corpus.build",
            "voiceguard.cli", "voiceguard.eval.cli"} <= names
    assert layer_of("voiceguard.eval.corpus.build") == 3 and layer_of("voiceguard.attacks.codecs") == 1
