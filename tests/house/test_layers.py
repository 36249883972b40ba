"""The house: each room imports only rooms below it, and no two modules import each other (directly or round a loop).

Every import counts, also those inside functions: a lazy import up the layers is still a wrong-way dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vistune

ROOT = Path(vistune.__file__).parent
# Lowest first. `vistune` itself (constants) is the floor; `vistune.cli` (the command list) the roof.
LAYERS = ["model", "data_prep", "perf", "eval", "train", "serve", "plan", "bench", "quickstart"]

# Inside a room, its sub-packages, lowest first; "*" stands for the room's loose modules. A room's `cli` and
# `__init__` are its roof: they may import any floor of it. A room not listed here has no floors to check.
SUBLAYERS = {
    "model": ["tiny", "*", "checkpoints"],
    "data_prep": ["records", "images", "text", "store", "batching", "doctor", "synth"],
    "train": ["saving", "loop", "run", "stages"],
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """vistune modules that `name` imports (a `from pkg import sub` of a submodule counts as that submodule)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("vistune")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vistune") and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    return {m for m in out if m != name}


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def test_every_room_is_a_layer():
    rooms = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms == set(LAYERS), f"rooms not placed in LAYERS: {rooms ^ set(LAYERS)}"


def test_imports_point_down_the_layers():
    wrong = []
    for module, imported in _graph().items():
        here = _room(module)
        for target in imported:
            there = _room(target)
            if here is None or there is None:
                if module in ("vistune",) and target != "vistune":
                    wrong.append(f"{module} -> {target}")
                continue
            if LAYERS.index(there) > LAYERS.index(here):
                wrong.append(f"{module} ({here}) -> {target} ({there})")
    assert not wrong, "imports up the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_circles():
    graph = _graph()
    # a package's __init__ re-exporting its own modules is not a circle: drop edges module -> own package
    for module, imported in graph.items():
        graph[module] = {t for t in imported if not module.startswith(t + ".")}
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, "modules that import each other (round a loop): " + "; ".join(map(str, circles))


def _floor(module: str) -> int | None:
    """Where `module` stands inside its room (None: a loose module in a room that has no "*" floor)."""
    parts = module.split(".")
    floors = SUBLAYERS[parts[1]]
    if len(parts) == 2 or parts[2] == "cli":
        return len(floors)  # the roof
    if parts[2] in floors:
        return floors.index(parts[2])
    return floors.index("*") if "*" in floors else None


def test_every_sub_package_is_a_floor():
    wrong = []
    for room, floors in SUBLAYERS.items():
        subs = {p.name for p in (ROOT / room).iterdir() if (p / "__init__.py").exists()}
        if subs != set(floors) - {"*"}:
            wrong.append(f"{room}: sub-packages not placed in SUBLAYERS: {sorted(subs ^ (set(floors) - {'*'}))}")
        loose = {p.stem for p in (ROOT / room).glob("*.py")} - {"__init__", "cli"}
        if loose and "*" not in floors:
            wrong.append(f"{room}: loose modules beside its sub-packages: {sorted(loose)}")
    assert not wrong, "\n".join(wrong)


def test_imports_point_down_inside_rooms():
    wrong = []
    for module, imported in _graph().items():
        room = _room(module)
        if room not in SUBLAYERS:
            continue
        for target in imported:
            if _room(target) != room:
                continue
            here, there = _floor(module), _floor(target)
            if here is not None and there is not None and there > here:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports up the floors of a room:\n" + "\n".join(sorted(wrong))
