"""The code's structure, as docs/architecture.md promises it: no import circle among the
modules of workflow_scripts/ (lazy imports inside functions included), every concern in
one module, and modules of a size a newcomer can read."""

import ast
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "workflow_scripts"
MAX_LINES = 320  # "about 300"; stats.py, the statistics, is the one exception


def imports_of(path: Path) -> set[str]:
    """The workflow_scripts modules a module imports, at its top or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                out.add(node.module.split(".")[0])
            elif node.level == 1:
                out.update(a.name for a in node.names)
            elif node.module and node.module.startswith("workflow_scripts."):
                out.add(node.module.split(".")[1])
    return {m for m in out if (PACKAGE / f"{m}.py").exists()}


def graph() -> dict[str, set[str]]:
    return {p.stem: imports_of(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    return found


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_among_the_modules():
    assert cycles(graph()) == []


def test_modules_stay_readable():
    long = {
        p.name: n
        for p in PACKAGE.glob("*.py")
        if p.name != "stats.py" and (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these by concern (at most about 300 lines): {long}"


def test_the_schema_names_stages_as_grid_does():
    """grid.STAGE_PATTERN owns what a stage may be called; the JSON schema mirrors it."""
    from workflow_scripts.grid import STAGE_PATTERN

    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
    assert schema["properties"]["stages"]["propertyNames"]["pattern"] == f"^{STAGE_PATTERN.replace('?:', '')}$"


def test_run_ids_are_spelled_out_only_in_grid():
    """The run-id and wildcard regular expressions live in grid.py; rules and other modules
    import them."""
    spelled = re.compile(r"_bs\\d|_bs\\\\d|\(r\|lr\)|r\|lr")
    hits = [
        str(p.relative_to(REPO))
        for p in [*PACKAGE.rglob("*.py"), *REPO.glob("rules/*.smk")]
        if p.name != "grid.py" and spelled.search(p.read_text())
    ]
    assert hits == []


def run_tool(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_python_is_lint_clean_and_formatted():
    """`make lint`'s ruff half: the config is pyproject.toml's [tool.ruff]."""
    for args in (("ruff", "check", "."), ("ruff", "format", "--check", ".")):
        proc = run_tool(*args)
        assert proc.returncode == 0, (
            f"`{' '.join(args)}` (fix with `ruff check --fix .` / `ruff format .`):\n"
            + proc.stdout[-3000:]
            + proc.stderr[-2000:]
        )


def test_rule_files_are_formatted():
    proc = run_tool("snakefmt", "--check", "rules/", "Snakefile")
    assert proc.returncode == 0, "run `snakefmt rules/ Snakefile`:\n" + proc.stdout[-3000:] + proc.stderr[-2000:]


def test_every_module_has_its_row_in_the_architecture():
    """docs/architecture.md's "Who owns what" names every module: the next person starts there."""
    text = (REPO / "docs" / "architecture.md").read_text()
    missing = [
        p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py" and f"`workflow_scripts/{p.name}`" not in text
    ]
    assert missing == [], f"add a row for each to docs/architecture.md: {missing}"
