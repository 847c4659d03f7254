"""Imports go one way: the layers contract of the package, checked on its source.

Every import statement of ``romanimpreprocess`` (module level and inside functions)
is read with ``ast``; each module belongs to one layer, and a module may import only
modules of its own layer or of a lower one. From the bottom:

0. ``low``: constants, parallel, _memory, _startup, utils.* (atomic writes, readout
   clock, ...), the package face (``romanimpreprocess/__init__``) and the stpipe
   entry module;
1. ``datamodels``: datamodels.* (files in and out, geometry);
2. ``algorithm``: the pure-array modules beside each Step (``<step>/<step>.py``,
   kernels, noise.layers/pearson, the simulator's physics);
3. ``stpipe``: stpipe.* (the Step base classes);
4. ``step``: ``<step>/<step>_step.py`` and the step packages' ``__init__``;
5. ``pipeline``: pipeline.*;
6. ``entry``: command lines and drivers (L1_to_L2, batch, demo, quicklook,
   simulate.cli).

There is also no import circle between modules. Known exceptions are listed below,
each with the work in progress that removes it (on another branch): they are
tolerated while present; delete the entry once that work is merged.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = "romanimpreprocess"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

LAYERS = ("low", "datamodels", "algorithm", "stpipe", "step", "pipeline", "entry")
RANK = {name: i for i, name in enumerate(LAYERS)}

LOW = {
    PACKAGE,
    f"{PACKAGE}.constants",
    f"{PACKAGE}.parallel",
    f"{PACKAGE}._memory",
    f"{PACKAGE}._startup",
    f"{PACKAGE}.stpipe_entry",
}
ENTRY_MODULES = {f"{PACKAGE}.demo", f"{PACKAGE}.quicklook", f"{PACKAGE}.simulate.cli"}
ENTRY_PACKAGES = (f"{PACKAGE}.L1_to_L2", f"{PACKAGE}.batch")

# Upward imports and circles still present on this branch, each removed by work in
# progress on another branch: delete the entry when that is merged.
# (importer, imported) -> why it is allowed for now.
KNOWN_UPWARD = {}
KNOWN_CIRCLES = {}


def module_name(path, root=ROOT):
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(root=ROOT):
    """``{module name: source path}`` of every module of the package."""
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def layer_of(module, known=None):
    """The layer of a module of the package (see the module docstring).

    ``known`` (all module names) tells a step package (it holds a ``*_step`` module)
    from another top-level package (algorithm) or a top-level module (low).
    """
    known = MODULES if known is None else known
    parts = module.split(".")
    if module in LOW or (len(parts) > 1 and parts[1] == "utils"):
        return "low"
    if module in ENTRY_MODULES or module.startswith(ENTRY_PACKAGES):
        return "entry"
    sub = parts[1]
    if sub in ("datamodels", "stpipe", "pipeline"):
        return sub
    if parts[-1].endswith("_step"):
        return "step"
    if len(parts) == 2:
        inside = [name for name in known if name.startswith(module + ".")]
        if any(name.endswith("_step") for name in inside):
            return "step"  # a step package's __init__ (it loads its Step)
        if inside:
            return "algorithm"  # a package without a Step (the simulator)
        return "low"  # a top-level helper module (constants, parallel, paths, ...)
    return "algorithm"


def imports_of(module, source, known):
    """Modules of the package that ``source`` (module ``module``) imports.

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module,
    else ``pkg``. Relative imports are resolved against ``module``.
    """
    is_package = module in known and known[module].name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - node.level + 1]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module
            targets = [
                f"{origin}.{alias.name}"
                if f"{origin}.{alias.name}" in known
                else origin
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                found.add(target)
    found.discard(module)
    return found


def import_graph(root=ROOT):
    known = package_modules(root)
    return {
        module: imports_of(module, path.read_text(), known)
        for module, path in known.items()
    }


def upward_imports(graph):
    """``(importer, imported, importer layer, imported layer)`` going up."""
    bad = []
    for module, targets in sorted(graph.items()):
        mine = layer_of(module, graph)
        for target in sorted(targets):
            theirs = layer_of(target, graph)
            if RANK[theirs] > RANK[mine]:
                bad.append((module, target, mine, theirs))
    return bad


def circles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
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
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


MODULES = set(package_modules())


def test_every_module_has_a_layer_and_the_graph_is_read():
    graph = import_graph()
    assert len(graph) > 60
    for module in graph:
        assert layer_of(module) in RANK
    assert layer_of(f"{PACKAGE}.ipc") == "step"
    assert layer_of(f"{PACKAGE}.simulate") == "algorithm"
    assert layer_of(f"{PACKAGE}.constants") == "low"
    # the graph is real: the pipeline imports the steps, the steps the base classes
    assert f"{PACKAGE}.stpipe.core" in graph[f"{PACKAGE}.stpipe"]
    assert f"{PACKAGE}.ramp_fitting" in graph[f"{PACKAGE}.pipeline.steps"]
    assert f"{PACKAGE}.pipeline.steps" in graph[f"{PACKAGE}.pipeline.l1_to_l2"]


def test_imports_go_one_way():
    found = upward_imports(import_graph())
    unexpected = [
        f"{a} ({la}) imports {b} ({lb})"
        for a, b, la, lb in found
        if (a, b) not in KNOWN_UPWARD
    ]
    assert not unexpected, "upward imports:\n" + "\n".join(unexpected)


def test_no_import_circle():
    found = circles(import_graph())
    unexpected = [sorted(c) for c in found if c not in KNOWN_CIRCLES]
    assert not unexpected, f"import circles: {unexpected}"


def test_datamodels_never_import_a_step_the_pipeline_or_stpipe():
    graph = import_graph()
    for module, targets in graph.items():
        if layer_of(module) != "datamodels":
            continue
        for target in targets:
            if (module, target) in KNOWN_UPWARD:
                continue
            assert layer_of(target) in ("low", "datamodels"), (module, target)


@pytest.mark.parametrize(
    ("importer", "statement", "imported"),
    [
        ("datamodels/l2.py", "from romanimpreprocess.stpipe.core import RipStep",
         "stpipe.core"),
        ("datamodels/l1.py", "from ..sky import sky_step", "sky.sky_step"),
        ("utils/atomic.py", "import romanimpreprocess.datamodels.l2",
         "datamodels.l2"),
        ("ipc/ipc.py", "from romanimpreprocess.pipeline import l1_to_l2",
         "pipeline.l1_to_l2"),
        ("stpipe/core.py", "from romanimpreprocess.dq_init import DQInitStep",
         "dq_init"),
    ],
)  # fmt: skip
def test_the_contract_catches_an_upward_import(tmp_path, importer, statement, imported):
    """A copy of the package with one upward import added fails the contract."""
    import shutil

    copy = tmp_path / PACKAGE
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / importer
    target.write_text(target.read_text() + f"\n\ndef _late():\n    {statement}\n")
    found = upward_imports(import_graph(copy))
    added = [(a, b) for a, b, _, _ in found if (a, b) not in KNOWN_UPWARD]
    assert added == [(module_name(copy / importer, copy), f"{PACKAGE}.{imported}")]


def test_the_contract_catches_a_circle():
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}}
    assert circles(graph) == [frozenset({"a.x", "a.y", "a.z"})]
