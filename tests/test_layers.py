"""The layering of README's architecture map: a module may import only its own layer or lower ones.

Each import package (a folder) is one layer, given in ``LAYERS``; the modules at the root of ``voiceguard`` are
the foundation (layer 0), listed by name so that a new one has to be placed on purpose.  No module is an
exception: a command-line module is in ``voiceguard.cli`` because it is a command-line module."""
from __future__ import annotations

import ast

from helpers import REPO

FOLDERS = {"voiceguard": "voiceguard", "detect": "voiceguard.detect", "watermark": "voiceguard.watermark",
           "eval": "voiceguard.eval", "demo": "voiceguard.demo", "configs": "voiceguard.configs"}

FOUNDATION = ("audio", "errors", "cards", "protocols", "files", "writers", "registry", "progress", "vad", "executors",
              "selfcheck", "version", "configs")
LAYERS = {
    **{f"voiceguard.{m}": 0 for m in FOUNDATION},
    "voiceguard.metrics": 1, "voiceguard.attacks": 1,       # pure functions of arrays
    "voiceguard.detect": 2, "voiceguard.watermark": 2,      # models: arrays in, scores / marks out
    "voiceguard.eval": 3,                                   # corpus builder, voiceprint risk, joint report
    "voiceguard.api": 4, "voiceguard": 4,                   # the front door (the package root re-exports it)
    "voiceguard.cli": 5, "voiceguard.demo": 5,              # adapters over the front door
}


def layer_of(module: str) -> int:
    """The layer of the longest ``LAYERS`` entry that is ``module`` or a package above it."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return LAYERS[".".join(parts[:n])]
    raise KeyError(f"{module} is in no layer: add its package to LAYERS (and to README's architecture map)")


def modules():
    for folder, pkg in FOLDERS.items():
        for path in (REPO / folder).rglob("*.py"):
            rel = path.relative_to(REPO / folder).with_suffix("").parts
            name = ".".join((pkg, *rel))
            is_pkg = rel[-1] == "__init__"
            yield name.removesuffix(".__init__"), is_pkg, path


def imported(name: str, is_pkg: bool, path, known: set[str], module_level_only: bool = False) -> set[str]:
    """The voiceguard modules ``path`` imports.  ``from pkg import x`` imports the module ``pkg.x`` when there is
    one, else the name ``x`` of ``pkg`` itself (e.g. ``from voiceguard import scan``: the package root)."""
    out = set()
    package = name if is_pkg else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    for node in (tree.body if module_level_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                out.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod)
    return {m for m in out if m.startswith("voiceguard")}


def test_no_upward_imports():
    known = {name for name, _, _ in modules()}
    violations = []
    for name, is_pkg, path in modules():
        own = layer_of(name)
        for mod in imported(name, is_pkg, path, known):
            if mod not in known and mod.rsplit(".", 1)[0] in known:
                mod = mod.rsplit(".", 1)[0]  # `from module import function`
            if mod in known and layer_of(mod) > own:
                violations.append(f"{name} (layer {own}) imports {mod} (layer {layer_of(mod)})")
    assert not violations, "\n".join(violations)


def test_loading_any_module_runs_only_foundation_code_in_the_package_root():
    """Python runs ``voiceguard/__init__.py`` for every ``import voiceguard.<x>``: at load time it may import only
    foundation modules (the api is imported on first use of one of its names)."""
    known = {name for name, _, _ in modules()}
    root = REPO / "voiceguard" / "__init__.py"
    loaded = imported("voiceguard", True, root, known, module_level_only=True)
    assert loaded and all(layer_of(m) == 0 for m in loaded), loaded


def test_a_lower_module_reaching_the_front_door_is_caught(tmp_path):
    """The rule sees ``from voiceguard import scan`` (a name of the package root, layer 4) in a layer-2 module."""
    known = {name for name, _, _ in modules()}
    fake = tmp_path / "fake.py"
    fake.write_text("from voiceguard import scan, writers\nimport voiceguard.audio\n")
    got = imported("voiceguard.detect.fake", False, fake, known)
    assert got == {"voiceguard", "voiceguard.writers", "voiceguard.audio"}
    assert max(layer_of(m) for m in got) == 4 > layer_of("voiceguard.detect.fake")


def test_every_module_has_a_layer():
    unplaced = []
    for name, _, _ in modules():
        try:
            layer_of(name)
        except KeyError as e:
            unplaced.append(str(e))
    assert not unplaced, "\n".join(unplaced)


def test_the_layer_map_sees_the_modules():
    names = {name for name, _, _ in modules()}
    assert {"voiceguard.audio", "voiceguard.metrics.cm", "voiceguard.attacks.base", "voiceguard.eval.corpus.build",
            "voiceguard.cli", "voiceguard.cli.eval", "voiceguard.api"} <= names
    assert layer_of("voiceguard.eval.corpus.build") == 3 and layer_of("voiceguard.attacks.codecs") == 1
    assert layer_of("voiceguard.cli.detect") == 5 and layer_of("voiceguard.audio") == 0


def test_the_readme_map_names_every_package_with_its_layer():
    """README's architecture map lists each import package of ``LAYERS`` (beyond the foundation modules) under
    the heading of its layer (a line starting ``layer N`` opens layer N)."""
    import re

    text = (REPO / "README.md").read_text()
    start = text.index("<!-- architecture-map:begin -->")
    block = text[start: text.index("<!-- architecture-map:end -->", start)]
    placed, layer = {}, None
    for line in block.splitlines():
        m = re.match(r"layer (\d)", line)
        if m:
            layer = int(m.group(1))
        for pkg in re.findall(r"`(voiceguard(?:\.\w+)?)`", line):
            placed.setdefault(pkg, layer)
    wrong = [f"{pkg} (layer {layer}, map: {placed.get(pkg)})" for pkg, layer in LAYERS.items()
             if pkg.removeprefix("voiceguard.") not in FOUNDATION and placed.get(pkg) != layer]
    assert not wrong, "README architecture map disagrees: " + ", ".join(wrong)
