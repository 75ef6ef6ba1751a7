"""The architecture of ARCHITECTURE.md, checked: dependencies point down, no cycles, small modules, light configs.

The static checks read bertc's source with ``ast`` and import none of it; the few that must import (light config
modules, ``bertc --help``) do so in a subprocess, so this file stays fast and never loads torch itself.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "bertc"

# ARCHITECTURE.md, "Dependencies point down": top to bottom. A module imports only from its own layer or lower ones.
LAYERS = [
    ("bertc", "bertc.cli", "bertc.cli_options", "bertc.cli_output"),
    ("bertc.optimize",),
    ("bertc.bench",),
    ("bertc.export",),
    ("bertc.compress",),
    ("bertc.finetune",),
    ("bertc.training",),
    ("bertc.inference",),
    ("bertc.torch_artifact", "bertc.console", "bertc.imports"),
    ("bertc.artifact", "bertc.data", "bertc.modeling"),
    ("bertc.families", "bertc.metrics", "bertc.formatting", "bertc.jsonio", "bertc.checks", "bertc.environment",
     "bertc.errors"),
]
LOCAL_IMPORTS_ALLOWED = {"bertc.cli", "bertc"}  # the CLI imports a command's module when the command runs
MAX_LINES = 450
MAX_CLI_LINES = 349
CONFIG_MODULES = ["bertc.data.config", "bertc.training.config", "bertc.finetune.config", "bertc.compress.config",
                  "bertc.export.config", "bertc.bench.config", "bertc.optimize.config", "bertc.imports.config"]
CONFIG_MAY_IMPORT = {"bertc.errors", "bertc.checks"}  # and other config modules and the standard library
HEAVY = ("torch", "transformers", "numpy", "pandas", "onnxruntime")
HELP_BOUND_S = 5.0  # generous: the real target (1.5 s) is measured by a person on a quiet machine


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    path: str  # relative to the repository, for messages
    line: int
    local: bool  # inside a function: runs when called, not when the module is imported
    type_checking: bool  # under `if TYPE_CHECKING:`: never runs


# ---------------------------------------------------------------------------------------------- reading the source

def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def sources() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


@cache
def parsed() -> tuple[dict[str, ast.Module], dict[str, str]]:
    trees, errors = {}, {}
    for name, path in sources().items():
        try:
            trees[name] = ast.parse(path.read_text(), filename=str(path))
        except SyntaxError as err:
            errors[name] = f"{path.relative_to(REPO)}:{err.lineno}: {err.msg}"
    return trees, errors


def is_package(name: str) -> bool:
    return sources()[name].name == "__init__.py"


def resolve(name: str) -> str | None:
    """The bertc module an imported dotted name refers to: itself, or the longest prefix that is a module."""
    while name:
        if name in sources():
            return name
        name = name.rpartition(".")[0]
    return None


def absolute(importer: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = importer if is_package(importer) else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, tree: ast.Module) -> list[Import]:
    path = str(sources()[name].relative_to(REPO))
    found = {}

    def add(target: str | None, node: ast.AST, local: bool, type_checking: bool):
        if target and (target == "bertc" or target.startswith("bertc.")):
            resolved = resolve(target)
            if resolved and resolved != name:
                found.setdefault((resolved, node.lineno), Import(name, resolved, path, node.lineno, local,
                                                                 type_checking))

    def visit(node: ast.AST, local: bool, type_checking: bool):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, local, type_checking)
        elif isinstance(node, ast.ImportFrom):
            base = absolute(name, node)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                add(submodule if submodule in sources() else base, node, local, type_checking)
        elif isinstance(node, ast.Call) and dynamic_import(node):
            add(node.args[0].value, node, local, type_checking)
        local = local or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.body:
                visit(child, local, True)
            for child in node.orelse:
                visit(child, local, type_checking)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, local, type_checking)

    visit(tree, False, False)
    return list(found.values())


def dynamic_import(call: ast.Call) -> bool:
    """``importlib.import_module("bertc.x")`` or ``__import__("bertc.x")``: an import all the same."""
    func = call.func
    named = (isinstance(func, ast.Attribute) and func.attr == "import_module") or \
        (isinstance(func, ast.Name) and func.id in ("import_module", "__import__"))
    return named and bool(call.args) and isinstance(call.args[0], ast.Constant) and \
        isinstance(call.args[0].value, str)


@cache
def all_imports() -> list[Import]:
    trees, _ = parsed()
    return [imp for name, tree in trees.items() for imp in imports_of(name, tree)]


def layer_of(module: str) -> int | None:
    best, best_len = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix if prefix == "bertc" else module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def describe(index: int) -> str:
    return f"layer {index + 1} ({', '.join(LAYERS[index])})"


# ---------------------------------------------------------------------------------------------- static checks

def test_every_module_parses():
    _, errors = parsed()
    assert not errors, "modules that do not parse:\n  " + "\n  ".join(errors.values())


def test_the_reader_sees_bertcs_imports():
    """Guard the guard: if the reader missed imports, the checks below would pass on anything."""
    edges = {(i.importer, i.target) for i in all_imports()}
    assert ("bertc.checks", "bertc.errors") in edges
    assert ("bertc.data.labels", "bertc.errors") in edges
    assert len(sources()) > 30 and len(edges) > 50
    tree = ast.parse("from .errors import BertcError\nfrom bertc.data import labels\n"
                     "def f():\n    import bertc.console\n    return importlib.import_module('bertc.jsonio')\n"
                     "if TYPE_CHECKING:\n    from bertc.metrics import quick_metrics\n")
    found = {(i.target, i.local, i.type_checking) for i in imports_of("bertc.checks", tree)}
    assert found == {("bertc.errors", False, False), ("bertc.data.labels", False, False),
                     ("bertc.console", True, False), ("bertc.jsonio", True, False), ("bertc.metrics", False, True)}


def test_every_module_has_a_layer():
    missing = sorted(name for name in sources() if layer_of(name) is None)
    assert not missing, (f"modules in no layer of ARCHITECTURE.md ({', '.join(missing)}); add them to its "
                         "layer list and to LAYERS in this test")


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per back edge of a depth-first search: none exactly when the graph has no cycle."""
    cycles, state, path = [], {}, []

    def visit(node: str):
        state[node] = "open"
        path.append(node)
        for child in sorted(graph[node]):
            if state.get(child) == "open":
                cycles.append([*path[path.index(child):], child])
            elif child not in state:
                visit(child)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_cycles():
    runtime = [i for i in all_imports() if not i.type_checking]
    graph = {name: set() for name in sources()}
    where = {}
    for imp in runtime:
        graph[imp.importer].add(imp.target)
        where.setdefault((imp.importer, imp.target), f"{imp.path}:{imp.line}" + (" (in a function)" * imp.local))
    cycles = [" -> ".join([cycle[0], *(f"{b} [{where[(a, b)]}]" for a, b in zip(cycle, cycle[1:]))])
              for cycle in find_cycles(graph)]
    assert not cycles, "import cycles (move what both sides need down a layer):\n  " + "\n  ".join(cycles)


def test_cycle_finder_names_the_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []  # a diamond is no cycle


def test_dependencies_point_down():
    upward = []
    for imp in all_imports():
        mine, theirs = layer_of(imp.importer), layer_of(imp.target)
        if mine is not None and theirs is not None and theirs < mine:
            upward.append(f"{imp.path}:{imp.line}: {imp.importer} ({describe(mine)}) imports {imp.target} "
                          f"({describe(theirs)})")
    assert not upward, ("imports that point up (move what is shared down a layer):\n  " + "\n  ".join(upward))


def test_layers_match_the_rule_on_known_examples():
    assert layer_of("bertc") == 0 and layer_of("bertc.cli") == 0
    assert layer_of("bertc.compress.prune") == 4 and layer_of("bertc.compress") == 4
    assert layer_of("bertc.data.config") == 9 and layer_of("bertc.errors") == 10
    assert layer_of("bertc.inference") == 7 and layer_of("bertc.inference.onnx") == 7
    assert layer_of("bertc.newthing") is None


# bertc's PyTorch model loading is a heavy runtime like onnxruntime: the PyTorch predictors import it when they
# load a model, so that ONNX serving and the bench's memory child for ONNX models never import torch.
TORCH_RUNTIME = {("bertc.inference.pytorch", "bertc.torch_artifact"),
                 ("bertc.inference.torch_quantized", "bertc.torch_artifact"),
                 ("bertc.inference.registry", "bertc.imports.source")}


def test_no_function_local_bertc_imports():
    local = [f"{i.path}:{i.line}: {i.importer} imports {i.target} inside a function"
             for i in all_imports() if i.local and i.importer not in LOCAL_IMPORTS_ALLOWED
             and (i.importer, i.target) not in TORCH_RUNTIME]
    assert not local, ("function-local imports of bertc modules (only bertc/cli.py and bertc/__init__.py may "
                       "import lazily; import at the top, moving shared code down a layer):\n  " + "\n  ".join(local))


def test_config_modules_import_only_light_modules():
    trees, _ = parsed()
    stdlib = sys.stdlib_module_names | {"__future__"}
    wrong = []
    for name in CONFIG_MODULES:
        assert name in trees, f"config module {name} is missing"
        for node in ast.walk(trees[name]):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = absolute(name, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in sources() else base for a in node.names]
            else:
                continue
            for target in targets:
                top = target.partition(".")[0]
                module = resolve(target) if top == "bertc" else None
                light = (top in stdlib if top != "bertc" else
                         module in CONFIG_MAY_IMPORT or (module or "").endswith(".config"))
                if not light:
                    wrong.append(f"{sources()[name].relative_to(REPO)}:{node.lineno}: {name} imports {target}")
    assert not wrong, ("config modules may import only the standard library, bertc.errors, bertc.checks and "
                       "other config modules:\n  " + "\n  ".join(wrong))


def post_init_shape_problem(cls: ast.ClassDef) -> str | None:
    """None when ``__post_init__`` starts with ``problems = field_problems(self)`` and ends with
    ``raise_problems(problems)`` (or is the one line ``raise_problems(field_problems(self))`` or
    ``check_config(self)``)."""
    if any(isinstance(n, ast.Assign) and ast.unparse(n) == "__post_init__ = check_config" for n in cls.body):
        return None
    post_init = next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__post_init__"), None)
    if post_init is None:
        return "has no __post_init__ running bertc.checks.field_problems"
    body = [n for n in post_init.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    first, last = ast.unparse(body[0]), ast.unparse(body[-1])
    if len(body) == 1 and first in ("raise_problems(field_problems(self))", "check_config(self)"):
        return None
    if first != "problems = field_problems(self)":
        return f"__post_init__ starts with `{first}`, not `problems = field_problems(self)`"
    if last != "raise_problems(problems)":
        return f"__post_init__ ends with `{last}`, not `raise_problems(problems)`"
    return None


def test_configs_check_themselves_with_field_problems():
    """Every *Config class (and every other config dataclass with a __post_init__) runs the shared checks."""
    trees, _ = parsed()
    wrong = []
    for name in CONFIG_MODULES:
        for cls in (n for n in trees[name].body if isinstance(n, ast.ClassDef)):
            has_post_init = any(isinstance(n, ast.FunctionDef) and n.name == "__post_init__" for n in cls.body) or any(
                isinstance(n, ast.Assign) and "__post_init__" in ast.unparse(n.targets[0]) for n in cls.body)
            if cls.name.endswith("Config") or has_post_init:
                problem = post_init_shape_problem(cls)
                if problem:
                    wrong.append(f"{sources()[name].relative_to(REPO)}:{cls.lineno}: {cls.name} {problem}")
    assert not wrong, "configs that do not run bertc.checks on themselves:\n  " + "\n  ".join(wrong)


def test_modules_stay_small():
    too_long = []
    for name, path in sources().items():
        lines = len(path.read_text().splitlines())
        limit = MAX_CLI_LINES if name == "bertc.cli" else MAX_LINES
        if lines > limit:
            too_long.append(f"{path.relative_to(REPO)}: {lines} lines (at most {limit})")
    assert not too_long, "modules over their size limit (split them by job):\n  " + "\n  ".join(too_long)


# ---------------------------------------------------------------------------------------------- what really loads

# Runs in a fresh interpreter: records which bertc line first imported each heavy package, then runs BODY.
PROBE = r'''
import importlib, json, os, sys, traceback
REPO, HEAVY = sys.argv[1], set(sys.argv[2].split(","))
first, doing = {}, ["startup"]

class Spy:
    @staticmethod
    def find_spec(name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HEAVY and top not in first:
            frames = [f for f in traceback.extract_stack()[:-1]
                      if f.filename.startswith(os.path.join(REPO, "bertc") + os.sep)]
            first[top] = {"while": doing[0], "via": [f"{os.path.relpath(f.filename, REPO)}:{f.lineno}"
                                                     for f in reversed(frames)]}
        return None

sys.meta_path.insert(0, Spy)
'''
REPORT = r'''
print(json.dumps({"loaded": sorted(m for m in HEAVY if m in sys.modules), "first": first}))
'''


def probe(body: str, timeout: float = 120) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE + body + REPORT, str(REPO), ",".join(HEAVY)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def heavy_message(found: dict) -> str:
    lines = []
    for package in found["loaded"]:
        origin = found["first"].get(package, {"while": "?", "via": []})
        lines.append(f"{package}, first imported while {origin['while']}"
                     + (f", via {' <- '.join(origin['via'])}" if origin["via"] else ""))
    return "\n  ".join(lines)


def imports_in_a_fresh_interpreter(modules: list[str]) -> dict:
    body = ("for name in sys.argv[3:]:\n"
            "    doing[0] = f'importing {name}'\n"
            "    importlib.import_module(name)\n")
    done = subprocess.run([sys.executable, "-c", PROBE + body + REPORT, str(REPO), ",".join(HEAVY), *modules],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_config_modules_import_nothing_heavy():
    found = imports_in_a_fresh_interpreter(CONFIG_MODULES)
    assert not found["loaded"], ("importing the config modules loaded heavy packages (configs must stay light so "
                                 "`bertc --help` is quick):\n  " + heavy_message(found))


def test_package_inits_import_nothing_heavy():
    """Importing a config module runs its package's __init__ first, so those stay light (bertc.inference, which
    has no config, is the public predictor API and may load what predicting needs)."""
    packages = sorted(name for name in sources() if is_package(name)
                      and any(config.startswith(name + ".") for config in CONFIG_MODULES) or name == "bertc")
    found = imports_in_a_fresh_interpreter(packages)
    assert not found["loaded"], ("importing the packages (their __init__.py) loaded heavy packages; keep "
                                 "__init__ files light:\n  " + heavy_message(found))


def test_probe_notices_a_heavy_import():
    """Guard the guard: the subprocess really sees what gets imported."""
    found = probe("doing[0] = 'importing json'\nimport json\ndoing[0] = 'importing numpy'\nimport numpy\n")
    assert found["loaded"] == ["numpy"] and found["first"]["numpy"]["while"] == "importing numpy"


def test_help_of_every_command_imports_nothing_heavy():
    body = '''
import typer
from bertc.cli import app, main
commands = sorted(typer.main.get_command(app).commands)
assert len(commands) > 5, commands
for args in [["--help"], *[[c, "--help"] for c in commands]]:
    doing[0] = "running bertc " + " ".join(args)
    sys.argv = ["bertc", *args]
    try:
        main()
    except SystemExit as done:
        assert done.code in (0, None), (args, done.code)
'''
    found = probe(body)
    assert not found["loaded"], ("`bertc ... --help` loaded heavy packages (the CLI must build its options "
                                 "from the light config modules):\n  " + heavy_message(found))


def test_help_is_quick():
    """Best of three runs, so one slow start on a busy machine does not fail it."""
    command = [sys.executable, "-c", "import sys; from bertc.cli import main; sys.argv = ['bertc', '--help']; main()"]
    times = []
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
        times.append(time.perf_counter() - start)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "finetune" in done.stdout
        if times[-1] <= HELP_BOUND_S:
            break
    assert min(times) <= HELP_BOUND_S, (f"`bertc --help` took {min(times):.2f} s at best of {len(times)} runs "
                                        f"(bound {HELP_BOUND_S} s, target 1.5 s)")



def test_every_public_name_of_the_package_resolves():
    import bertc

    for name in bertc.__all__:
        assert getattr(bertc, name) is not None, name
