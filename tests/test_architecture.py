"""The layout holds: packages import downward only, rooms and modules form no import cycle.

Every import of every module of ``codesign``, ``search_spaces`` and ``cost_models`` is
read from its source (function-level imports included). Nodes are the two lower
packages, the rooms ``codesign.accuracy`` and ``codesign.results``, and each top-level
module of ``codesign``; the package's ``__init__`` is only the public facade and no module
inside imports it.
"""

import ast
import importlib
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("codesign", "search_spaces", "cost_models")
ROOMS = ("codesign.accuracy", "codesign.results")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """The modules ``path`` imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found |= {f"{base}.{alias.name}" for alias in node.names}  # a name or a module (`from codesign import lease`)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def node(module: str) -> str:
    """The graph node a module belongs to."""
    for room in ROOMS:
        if module == room or module.startswith(room + "."):
            return room
    top = module.split(".")[0]
    if top != "codesign":
        return top
    return ".".join(module.split(".")[:2])


def sources() -> dict[str, set[str]]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            modules[module_name(path)] = imports(path)
    return modules


def known(target: str, modules: dict) -> str | None:
    """The module of ``modules`` an imported name refers to (a name imported from a module is that module)."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def edges() -> set[tuple[str, str]]:
    modules = sources()
    out = set()
    for module, targets in modules.items():
        if module == "codesign":
            continue
        for target in targets:
            resolved = known(target, modules)
            if resolved is None:
                continue
            assert resolved != "codesign", f"{module} imports the package facade codesign; import the module itself"
            a, b = node(module), node(resolved)
            if a != b:
                out.add((a, b))
    return out


def test_packages_import_downward_only():
    order = {"codesign": 0, "search_spaces": 1, "cost_models": 2}
    for a, b in edges():
        pa, pb = a.split(".")[0], b.split(".")[0]
        assert order[pa] <= order[pb], f"{a} imports {b}: codesign -> search_spaces -> cost_models, never back"


def test_rooms_and_modules_form_no_cycle():
    graph: dict[str, set[str]] = {}
    for a, b in edges():
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(n):
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
            if m not in state:
                visit(m)
        path.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_the_accuracy_room_knows_nothing_of_results_search_or_accelerators():
    allowed = {"codesign.outcome", "codesign.metrics", "codesign.stores", "search_spaces"}
    for a, b in edges():
        if a == "codesign.accuracy":
            assert b in allowed, f"the accuracy room imports {b}; it may import only {sorted(allowed)}"


HEAVY = ("jax", "flax", "optax", "optuna", "ray", "onnx")


@pytest.mark.parametrize("code", [
    "import codesign, cost_models",
    "from codesign.cli import main; main(['--help'])",
    "from codesign.cli import main; main(['network', 'squeezenet_v1_0'])",
], ids=["import", "help", "network"])
def test_what_needs_no_model_imports_no_heavy_library(code):
    """``import codesign``, ``codesign --help`` and ``codesign network NAME`` import none of JAX, Flax, Optax, Optuna,
    Ray or ONNX (each costs a second or so of start-up)."""
    check = f"import sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("package", ["codesign", "cost_models"])
def test_every_public_name_of_a_package_resolves_to_what_its_module_defines(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        defining = importlib.import_module(module._EXPORTS[name])
        assert value is getattr(defining, name), name
        assert not isinstance(value, types.ModuleType), f"{package}.{name} is a module (a submodule of that name)"
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        module.nothing
