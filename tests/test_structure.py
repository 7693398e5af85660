"""The package's layout: no module imports another that (directly or not) imports it back, counting
imports inside functions too, and `train/` holds the jobs a user runs (benchmarks live in train/bench/)."""

import ast

from conftest import PROJECT

PACKAGE = PROJECT / "train"


def module_name(path) -> str:
    parts = path.relative_to(PROJECT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path, known: set[str]) -> set[str]:
    """The package's modules that `path` imports anywhere in its body (top level or in a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from train import metrics` imports train.metrics; `from train.data import x` imports train.data
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def import_graph() -> dict[str, set[str]]:
    # modules of packages only: the metric scripts under train/metrics/<name>/ are loaded by path
    files = {module_name(p): p for p in PACKAGE.rglob("*.py") if (p.parent / "__init__.py").is_file()}
    known = set(files)
    return {name: imported_modules(path, known) - {name, "train"} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state = {}  # name -> "open" while on the current path, "done" after

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_no_module_of_the_package_imports_itself_in_a_circle():
    graph = import_graph()
    assert {"train.fit", "train.export", "train.inference", "train.onnx_runtime", "train.metrics"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    # the small shared pieces import none of the jobs that use them
    assert graph["train.onnx_runtime"] == set()
    assert graph["train.metrics"] <= {"train.labels"}
    assert graph["train.model_folder"] <= {"train.labels"}


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_benchmarks_live_in_their_own_subpackage():
    assert not list(PACKAGE.glob("bench_*.py"))
    assert {p.stem for p in (PACKAGE / "bench").glob("*.py")} == {"__init__", "predict", "train", "stream", "sib200", "recipe", "aggregation"}
    makefile = (PROJECT / "Makefile").read_text()
    for name in ("predict", "train", "stream", "sib200", "recipe", "aggregation"):
        assert f"-m train.bench.{name}" in makefile
    assert '"train.bench"' in (PROJECT / "pyproject.toml").read_text()
