"""Architecture rules for src/reslab, checked by parsing the source with `ast` (reslab is never imported).

a. No import cycle between reslab modules. Every import counts: module level, inside functions and methods,
   under `if`, relative, and `importlib.import_module("reslab...")` with a literal string. `from reslab.a import b`
   is an edge to the module `reslab.a.b` when it exists, else to `reslab.a` (so `from reslab.models import x`
   inside reslab/models/cifar.py is an edge to the package's __init__).
b. No module imports another module's `_private` name. Dunders (`__version__`) are fine, and so is taking a
   private submodule (`from reslab.engine import _loop`): the name then belongs to no other module.
c. Layers. LAYERS below is the ONE place the order is declared (docs/architecture.md describes it), lowest first.
   A module's layer is its first component under reslab (`reslab.engine.trainer` -> engine, `reslab.__main__` ->
   cli, `reslab` itself -> the root). A module may import its own package and any package in a strictly lower
   entry; an upward import, or one into a *different* package of the same entry (models -> data), is an error.
   Every package or top-level module under src/reslab must be placed: to add one, put its name in the right
   entry (or a new tuple between two), and update docs/architecture.md. Names that do not exist yet are room.
e. One module owns the on-disk layout of runs and studies (LAYOUT; its names are the string constants it assigns
   at module level). No other module joins one of its names into a path with `/`; passes one of its file names
   (a name with a dot: `best.pt`) or a string starting with one of its prefixes (`ckpt-`, `snapshot-*.pt`) to a
   call, or builds one in an f-string; or holds one of its file names anywhere but in a docstring. (A bare
   directory name such as `runs` is also an ordinary word: a dict key or a column header is not a path.)
d. No function or method over MAX_LINES lines (`def` line to last line, decorators excluded; nested functions
   are named by qualname, `outer.inner`). Exceptions go in ALLOW_LONG {"reslab.module:qualname": "reason"};
   an entry that no longer names a long function fails.

The checks are plain functions over {module_name: source_text}, so the real tree and the synthetic trees of
the self-tests at the bottom go through the same code.
"""
import ast
from collections import namedtuple
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "reslab"

LAYERS = [
    ("reslab",),                       # the root: ReslabError, __version__ (reslab/__init__.py only)
    ("layout",),                       # where a run's and a study's files lie: every file name, spelled once
    ("data", "plotting"),              # CIFAR-10 (splits, normalisation), matplotlib helpers
    ("weights",),                      # weight files: the checkpoint format, published weights, download + sha256
    ("models",),                       # networks by name; `pretrained=` loads through weights
    ("config",),                       # validated config; asks the model registry and the data's allowed values
    ("trackers",),                     # experiment trackers the engine logs to (TensorBoard, MLflow, W&B)
    ("engine",),                       # training, evaluation, run directories
    ("importers", "export"),           # foreign weights in as reslab checkpoints; weights out (onnx, pt2, folders)
    ("study", "bench"),                # grids of runs; benchmarks of the engine's step
    ("launchers",),                    # cluster launchers for studies (SLURM through submitit)
    ("analysis",),                     # responses, gradients, the one verdict engine
    ("report",),                       # study reports: documents, figures, per-kind sections and verdicts
    ("cli",),                          # the command line, and reslab/__main__.py
]
RANK = {name: i for i, entry in enumerate(LAYERS) for name in entry}
MAX_LINES = 80
ALLOW_LONG: dict[str, str] = {}

REQUIRED = """reslab reslab.cli reslab.config reslab.models reslab.models.registry reslab.models.resnet
reslab.models.cifar reslab.models.imagenet reslab.models.multiscale reslab.data reslab.data.cifar
reslab.data.pipeline reslab.engine reslab.engine.trainer reslab.weights.files reslab.engine.runs
reslab.engine.distributed reslab.study reslab.study.runner reslab.analysis reslab.analysis.responses
reslab.analysis.gradients reslab.report reslab.report.document reslab.importers.akamaster reslab.bench""".split()

Edge = namedtuple("Edge", "src dst line names")


@lru_cache(maxsize=1)
def load_real():
    """({module: source}, frozenset of modules that are a package's __init__) for every .py under src/reslab."""
    sources, packages = {}, set()
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
            packages.add(".".join(parts))
        sources[".".join(parts)] = path.read_text(encoding="utf-8")
    return sources, frozenset(packages)


@lru_cache(maxsize=None)
def parse(text):
    return ast.parse(text)


def is_package(mod, sources, packages):
    return mod in packages or "." not in mod or any(m.startswith(mod + ".") for m in sources)


def where(mod, line, sources, packages):
    return f"src/{mod.replace('.', '/')}{'/__init__' if is_package(mod, sources, packages) else ''}.py:{line}"


def resolve(mod, is_pkg, target, level):
    """The absolute name `from <level dots><target> import ...` means inside `mod`, or None."""
    if level == 0:
        return target
    parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
    if level > len(parts):
        return None
    return ".".join(parts[: len(parts) - level + 1] + ([target] if target else []))


def raw_imports(mod, tree, is_pkg):
    """(line, imported module, name or None) for every import anywhere in the tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name, None) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve(mod, is_pkg, node.module, node.level)
            yield from ((node.lineno, base, a.name) for a in node.names if base)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            if getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module":
                yield node.lineno, str(node.args[0].value), None  # only a literal can be followed


def edges(sources, packages=frozenset()):
    """Every import edge between reslab modules, one per (src, dst, line), with the names it takes from dst
    (none when dst is a submodule: `from reslab.engine import _loop` takes the module _loop); no self-edges."""
    out = {}
    for mod, text in sources.items():
        for line, base, name in raw_imports(mod, parse(text), is_package(mod, sources, packages)):
            if base == "reslab" or base.startswith("reslab."):
                dst = f"{base}.{name}" if name and f"{base}.{name}" in sources else base
                if dst != mod:
                    out.setdefault((mod, dst, line), []).extend([name] if name and dst == base else [])
    return [Edge(*key, tuple(names)) for key, names in sorted(out.items(), key=lambda kv: kv[0][::2] + kv[0][1:2])]


def reach(start, graph):
    """{module: its predecessor on a shortest path from start} for every module reachable from start (BFS)."""
    prev, queue = {}, [start]
    for node in queue:
        for nxt in sorted(graph[node] - prev.keys()):
            prev[nxt] = node
            queue.append(nxt)
    return prev


def loop(start, prev):
    """The shortest cycle through start, as a tuple rotated to begin at its smallest module, closed."""
    path = [start]
    while prev[path[-1]] != start:
        path.append(prev[path[-1]])
    path = path[::-1]
    i = path.index(min(path))
    return tuple(path[i:] + path[:i] + [path[i]])


def check_cycles(sources, packages=frozenset()):
    """Each strongly connected component (modules that reach each other), and its shortest loops."""
    first = {}
    for e in reversed(edges(sources, packages)):
        first[e.src, e.dst] = e.line
    graph = {m: {dst for src, dst in first if src == m and dst in sources} for m in sources}
    reaches = {m: reach(m, graph) for m in graph}
    comps = {frozenset(n for n in reaches[m] if m in reaches[n]) for m in graph if m in reaches[m]}
    out = []
    for comp in sorted(comps, key=sorted):
        out.append(f"import cycle among {', '.join(sorted(comp))}; break one edge of each loop:")
        out += ["  " + " -> ".join(f"{a} ({where(a, first[a, b], sources, packages)})" for a, b in zip(c, c[1:]))
                + f" -> {c[-1]}" for c in sorted({loop(m, reaches[m]) for m in comp})]
    return out


def check_private(sources, packages=frozenset()):
    return [f"{where(e.src, e.line, sources, packages)}: imports {n} from {e.dst} -- a _private name of "
            f"another module; make it public or move it" for e in edges(sources, packages)
            for n in e.names if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))]


def layer_of(mod):
    parts = mod.split(".") + [""]
    return {"": "reslab", "__main__": "cli"}.get(parts[1], parts[1])


def check_layers(sources, packages=frozenset()):
    out = []
    for e in edges(sources, packages):
        a, b = layer_of(e.src), layer_of(e.dst)
        if a == b or a not in RANK or b not in RANK or RANK[b] < RANK[a]:
            continue
        why = (f"{a} and {b} share layer {RANK[a]}; sibling packages may not import each other"
               if RANK[a] == RANK[b] else f"upward: {a} (layer {RANK[a]}) may not import {b} (layer {RANK[b]})")
        out.append(f"{where(e.src, e.line, sources, packages)}: {e.src} -> {e.dst} -- {why}")
    return out


def check_placed(sources, packages=frozenset()):
    missing = {}
    for mod in sorted(sources):
        if layer_of(mod) not in RANK:
            missing.setdefault(layer_of(mod), mod)
    return [f"{where(mod, 1, sources, packages)}: '{name}' is not placed in LAYERS -- add it to LAYERS in "
            f"tests/test_architecture.py (and docs/architecture.md)" for name, mod in missing.items()]


def functions(node, prefix=""):
    """(qualname, def node) for every function and method, nested ones included."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + child.name, child
        named = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        yield from functions(child, prefix + child.name + "." if named else prefix)


def long_functions(sources):
    """{"module:qualname": (line, length)} for every function over MAX_LINES."""
    return {f"{mod}:{qual}": (fn.lineno, fn.end_lineno - fn.lineno + 1) for mod, text in sources.items()
            for qual, fn in functions(parse(text)) if fn.end_lineno - fn.lineno + 1 > MAX_LINES}


def check_long(sources, packages=frozenset(), allow=None):
    allow = ALLOW_LONG if allow is None else allow
    return [f"{where(key.split(':')[0], line, sources, packages)}: {key} is {n} lines -- over {MAX_LINES}; "
            f"split it (or add it to ALLOW_LONG with a reason)"
            for key, (line, n) in sorted(long_functions(sources).items()) if key not in allow]


def stale_allow(sources, allow):
    long = long_functions(sources)
    return [f"ALLOW_LONG[{key!r}] is stale -- no such function over {MAX_LINES} lines; remove the entry"
            for key in sorted(allow) if key not in long]


LAYOUT = "reslab.layout"
# Modules that spell a layout name for something that is not reslab's layout: {module: why}.
ALLOW_LAYOUT = {"reslab.weights.store": "torch.hub's own cache folder (<hub dir>/checkpoints), not a run's"}


def layout_names(sources):
    """The string constants LAYOUT assigns at module level: its file names, directory names and prefixes."""
    names = set()
    for node in parse(sources[LAYOUT]).body if LAYOUT in sources else []:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            names |= {c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    return names


def docstrings(tree):
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    nodes = [n for n in ast.walk(tree) if isinstance(n, kinds)]
    return {id(n.body[0].value) for n in nodes
            if n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}


def spelled_layout(tree, names):
    """(line, name) of every layout name this module spells (rule e)."""
    prefixes = tuple(n for n in names if n.endswith("-"))
    skip, found = docstrings(tree), set()
    for node in ast.walk(tree):
        joined = isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
        if joined:
            parts = [node.left, node.right]
        elif isinstance(node, ast.Call):
            parts = [*node.args, *(k.value for k in node.keywords)]
        elif isinstance(node, ast.JoinedStr):
            parts = node.values
        else:
            parts = [node]
        for o in parts:
            if not (isinstance(o, ast.Constant) and isinstance(o.value, str)) or id(o) in skip:
                continue
            v, passed = o.value, o is not node  # passed: an operand, an argument or an f-string's part
            file_name = v in names and "." in v
            if (joined and v in names) or file_name or (passed and prefixes and v.startswith(prefixes)):
                found.add((o.lineno, v))
    return sorted(found)


def check_layout(sources, packages=frozenset(), allow=None):
    names, allow = layout_names(sources), ALLOW_LAYOUT if allow is None else allow
    return [f"{where(mod, line, sources, packages)} spells {name!r}: use {LAYOUT}"
            for mod, text in sources.items() if mod != LAYOUT and mod not in allow and names
            for line, name in spelled_layout(parse(text), names)]


CHECKS = [check_cycles, check_private, check_layers, check_placed, check_long, check_layout]


def report(offenders, title):
    assert not offenders, f"{title} ({len(offenders)}):\n" + "\n".join(offenders)


def test_discovery_found_the_tree():
    sources, _ = load_real()
    assert not set(REQUIRED) - set(sources), f"expected under {ROOT}: {sorted(set(REQUIRED) - set(sources))}"
    assert len(sources) > 40, f"only {len(sources)} modules parsed under {ROOT}"


def test_no_import_cycles():
    report(check_cycles(*load_real()), "import cycles")


def test_no_private_imports():
    report(check_private(*load_real()), "imports of another module's _private names")


def test_no_layout_name_spelled_outside_its_module():
    assert "checkpoints" in layout_names(load_real()[0])  # the scan reads the real module
    report(check_layout(*load_real()), f"run or study file names spelled outside {LAYOUT}")


def test_layer_order():
    report(check_layers(*load_real()), "imports against the layer order in LAYERS")


def test_every_package_is_placed_in_layers():
    report(check_placed(*load_real()), "packages missing from LAYERS")


def test_no_long_functions():
    report(check_long(*load_real()), f"functions over {MAX_LINES} lines")


def test_allow_long_has_no_stale_entries():
    report(stale_allow(load_real()[0], ALLOW_LONG), "stale ALLOW_LONG entries")


# Self-tests: each rule catches a small synthetic tree that breaks it, and a clean one passes everything.
CLEAN = {
    "reslab": "class ReslabError(Exception):\n    pass\n__version__ = '0'\n",
    "reslab.models": "from reslab.models.resnet import ResNet\nfrom . import registry\n",
    "reslab.models.resnet": "from reslab import ReslabError\nclass ResNet:\n    pass\n",
    "reslab.models.registry": "from .resnet import ResNet\n",
    "reslab.data": "def load():\n    return 1\n",
    "reslab.engine": "",
    "reslab.engine.trainer": "from reslab.models import ResNet\nfrom ..data import load\nfrom .. import __version__\n",
    "reslab.cli": "import importlib\ndef main():\n    return importlib.import_module('reslab.engine.trainer')\n",
    "reslab.__main__": "from reslab.cli import main\n",
}


def only_failure(sources):
    failed = [c for c in CHECKS if c(sources)]
    return failed[0](sources) if len(failed) == 1 else [f"failing checks: {[c.__name__ for c in failed]}"]


def test_clean_synthetic_tree_passes_and_has_edges():
    assert {c.__name__: c(CLEAN) for c in CHECKS} == {c.__name__: [] for c in CHECKS}
    assert {("reslab.models", "reslab.models.registry"), ("reslab.models.registry", "reslab.models.resnet"),
            ("reslab.engine.trainer", "reslab"), ("reslab.cli", "reslab.engine.trainer"),
            ("reslab.__main__", "reslab.cli"), ("reslab.engine.trainer", "reslab.models")
            } <= {(e.src, e.dst) for e in edges(CLEAN)}


def test_cycle_through_a_function_level_import_is_caught():
    src = {**CLEAN, "reslab.engine.a": "import reslab.engine.b\n",
           "reslab.engine.b": "def f():\n    from reslab.engine import a\n"}
    assert "reslab.engine.b (src/reslab/engine/b.py:2) -> reslab.engine.a" in "\n".join(only_failure(src))


def test_private_import_is_caught():
    src = {**CLEAN, "reslab.engine.trainer": "from reslab.models.resnet import ResNet, _helper\n"}
    assert "imports _helper from reslab.models.resnet" in only_failure(src)[0]


def test_upward_import_is_caught():
    src = {**CLEAN, "reslab.models.x": "from reslab.engine.y import run\n", "reslab.engine.y": "run = 1\n"}
    assert "upward: models" in only_failure(src)[0]


def test_same_layer_cross_package_import_is_caught():
    src = {**CLEAN, "reslab.plotting": "from reslab.data import load\n"}
    assert "plotting and data share layer 2" in only_failure(src)[0]


def test_long_function_is_caught():
    src = {**CLEAN, "reslab.engine.long": "class A:\n    def f(self):\n        def g():\n" + "            x = 1\n" * 89}
    assert "reslab.engine.long:A.f.g is 90 lines" in only_failure(src)[1]
    assert check_long(src, allow={"reslab.engine.long:A.f": "a", "reslab.engine.long:A.f.g": "b"}) == []


def test_unplaced_package_is_caught():
    src = {**CLEAN, "reslab.weird": "", "reslab.weird.thing": "from reslab import ReslabError\n"}
    assert "'weird' is not placed in LAYERS" in only_failure(src)[0]


def test_stale_allow_long_entry_is_caught():
    src = {**CLEAN, "reslab.engine.long": "def f():\n" + "    x = 1\n" * 89}
    allow = {"reslab.engine.long:f": "ok", "reslab.engine.trainer:gone": "x", "reslab.data:load": "short"}
    stale = stale_allow(src, allow)
    assert len(stale) == 2 and "reslab.data:load" in stale[0] and "trainer:gone" in stale[1]


def test_relative_imports_resolve_and_private_submodules_are_allowed():
    src = {**CLEAN, "reslab.engine": "from . import _loop\nfrom .trainer import fit\n",
           "reslab.engine._loop": "from ..models import ResNet\nfrom ...beyond import top\n",
           "reslab.engine.trainer": "from ._loop import run\nfit = run\n"}
    assert {(e.src, e.dst, e.names) for e in edges(src) if e.src.startswith("reslab.engine")} == {
        ("reslab.engine", "reslab.engine._loop", ()), ("reslab.engine", "reslab.engine.trainer", ("fit",)),
        ("reslab.engine._loop", "reslab.models", ("ResNet",)),
        ("reslab.engine.trainer", "reslab.engine._loop", ("run",))}
    assert [c.__name__ for c in CHECKS if c(src)] == []


def test_layout_name_spelled_elsewhere_is_caught():
    layout = 'BEST, CHECKPOINTS, RUNS = "best.pt", "checkpoints", "runs"\nSNAP = "snapshot-"\n'
    ok = ('"""A docstring may name best.pt and checkpoints/."""\nspec = {"runs": []}\n'
          'msg = f"{d} has no best.pt"\nheader = ["model", "runs"]\np.add_argument("runs", nargs="+")\n')
    src = {**CLEAN, "reslab.layout": layout, "reslab.engine.ok": ok}
    assert check_layout(src) == []
    for bad, name in [('p = run / "checkpoints" / x\n', "checkpoints"), ('p = d / "runs"\n', "runs"),
                      ('files = d.glob("snapshot-*.pt")\n', "snapshot-*.pt"),
                      ('name = f"snapshot-{it:08d}.pt"\n', "snapshot-"), ('w.save(b, "best.pt")\n', "best.pt"),
                      ('artifact = "best.pt"\n', "best.pt")]:
        found = check_layout({**src, "reslab.engine.bad": bad})
        assert found == [f"src/reslab/engine/bad.py:1 spells {name!r}: use {LAYOUT}"], (bad, found)
