"""The README's Python examples run as printed (against the tiny trained model) and return what
their comments document: the same keys, nested the same way. The labels the comments show are the
shipped model's; a random tiny model's labels are not compared."""

import ast
import re

import pytest

from conftest import PROJECT

README = (PROJECT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def documented_results(block: str) -> dict[int, object]:
    """{line of an expression statement: the value its following `# ...` comment lines show}."""
    lines, out = block.splitlines(), {}
    for node in ast.parse(block).body:
        if not isinstance(node, ast.Expr):
            continue
        comment = []
        for line in lines[node.end_lineno:]:
            if not line.startswith("# "):
                break
            comment.append(line[2:])
        if comment:
            out[node.lineno] = ast.literal_eval(" ".join(comment))  # `{...}` and `...` stand for any value
    return out


def same_shape(documented, actual, where="result"):
    """Documented lists, dicts and their keys are what `actual` has; `...` / `{...}` match anything."""
    if documented is Ellipsis or documented == {Ellipsis}:
        return
    if isinstance(documented, list) and all(isinstance(d, str) for d in documented):  # labels: any number
        assert isinstance(actual, list) and all(isinstance(a, str) for a in actual), (where, actual)
    elif isinstance(documented, list):
        assert isinstance(actual, list) and len(actual) == len(documented), where
        for i, (d, a) in enumerate(zip(documented, actual)):
            same_shape(d, a, f"{where}[{i}]")
    elif isinstance(documented, dict):
        assert isinstance(actual, dict) and set(actual) == set(documented), (where, set(actual), set(documented))
        for key in documented:
            same_shape(documented[key], actual[key], f"{where}[{key!r}]")
    else:
        assert type(actual) is type(documented), (where, actual, documented)


def run_block(block: str, model_dir) -> dict[int, object]:
    """Execute the block as a user would (from the project root), with the tiny model in place of
    models/latest; return the value of every expression statement by line."""
    tree = ast.parse(block.replace('"models/latest"', repr(str(model_dir))))
    for i, node in enumerate(tree.body):
        if isinstance(node, ast.Expr):  # keep the value a notebook would show
            tree.body[i] = ast.fix_missing_locations(ast.copy_location(ast.Assign(
                targets=[ast.Subscript(value=ast.Name("_shown", ast.Load()), slice=ast.Constant(node.lineno),
                                       ctx=ast.Store())], value=node.value), node))
    namespace = {"_shown": {}}
    exec(compile(tree, "README.md", "exec"), namespace)
    return namespace["_shown"]


def test_the_readme_has_the_python_examples():
    assert len(BLOCKS) >= 2 and "Classifier.from_pretrained" in BLOCKS[0] and "pipeline(" in BLOCKS[1]
    assert documented_results(BLOCKS[0])  # the example shows what predict() returns


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_each_readme_python_example_runs_and_returns_the_documented_keys(number, news_model_dir, monkeypatch):
    monkeypatch.chdir(PROJECT)  # the examples open seeds/... relative to the project root
    block = BLOCKS[number]
    assert "models/latest" in block  # the example is about the trained model, which the tiny one stands in for
    shown = run_block(block, news_model_dir)
    for line, documented in documented_results(block).items():
        same_shape(documented, shown[line], f"README python block {number + 1}, line {line}")
