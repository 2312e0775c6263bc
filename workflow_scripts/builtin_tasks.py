"""lm-eval's own benchmark definitions on local files (no hub at evaluation time).

The study's built-in benchmarks run through lm-eval's own task definitions: its prompts,
few-shot exemplars and counts, filters and metrics. Only the dataset fields are replaced,
so each task reads local JSONL files in the real dataset's schema, fetched once on a
machine with internet (:func:`workflow_scripts.benchmark_data.fetch_benchmark`) and read
offline on the compute nodes (:func:`builtin_specs`).

Supported (``BUILTINS``, the table in :mod:`workflow_scripts.registry`): gsm8k, arc_easy,
arc_challenge, hellaswag, piqa, ifeval, leaderboard_mmlu_pro, and BBH as lm-eval's ``bbh``
group (the 27 chain-of-thought 3-shot subtasks, ``bbh_cot_fewshot_*``; ``bbh_cot_fewshot``
is the same group under its other name, ``bbh_fewshot`` the answer-only variant).

Layout under a task's ``data_dir`` (:func:`benchmark_files`)::

    {split}.jsonl                          a single task, one file per split lm-eval reads
    {subtask}/{split}.jsonl                a group (bbh: {subtask} = boolean_expressions, ...)
    nltk_data/tokenizers/punkt_tab/english/*   ifeval only: NLTK's sentence splitter
    source.json                            written last by fetch_benchmark (provenance)

Splits lm-eval reads (it loads the few-shot pool even for 0-shot tasks, and nothing else):
gsm8k test+train; arc_* test+train; hellaswag validation+train; piqa validation+train;
ifeval train (its only split); leaderboard_mmlu_pro test+validation (shots: the first
validation rows); bbh test (the shots are written in the YAML).

``lm_eval.tasks._yaml_loader`` is private to lm-eval, and groups are built from lm-eval's
``Group``/``ConfigurableTask`` classes (a group passed as a dict leaks its
``aggregate_metric_list`` into every subtask config in lm-eval 0.4.13); the pin in
pyproject.toml and tests/test_builtin_tasks.py guard both.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from .nltk_punkt import NLTK_DIR, ensure_nltk_punkt, punkt_files
from .registry import BUILTINS, builtin

SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")
SOURCE_JSON = "source.json"


def builtin_metrics(name: str) -> tuple[str, ...]:
    """The ``metric,filter`` keys lm-eval reports for ``name`` (for a group: its aggregate)."""
    return builtin(name).metrics


def builtin_leaves(name: str) -> list[str]:
    """lm-eval's task names whose samples make up ``name`` (a group's subtasks; else itself)."""
    return list(builtin(name).leaves(name))


def benchmark_files(name: str, data_dir: str | Path) -> dict[str, Path]:
    """The local files evaluating built-in task ``name`` reads, under ``data_dir``.

    Keys: the split (``test``) for a single task, ``{subtask}/{split}`` for a group; for
    ifeval also the punkt_tab files (``nltk_data/...``). Loads nothing: a fixed table
    (``BUILTINS``, checked against lm-eval by tests/test_builtin_tasks.py), so it is cheap
    enough for Snakemake's DAG building.
    """
    b, data_dir = builtin(name), Path(data_dir)
    files = {}
    for folder in b.leaves(name).values():
        for split in b.splits:
            key = f"{folder}/{split}" if folder else split
            files[key] = data_dir / f"{key}.jsonl"
    if name == "ifeval":
        files.update(punkt_files(data_dir / NLTK_DIR))
    return files


def source_file(data_dir: str | Path) -> Path:
    """Where :func:`~workflow_scripts.benchmark_data.fetch_benchmark` records what it fetched."""
    return Path(data_dir) / SOURCE_JSON


# ---------------------------------------------------------------- lm-eval's YAML definitions


def tasks_dir() -> Path:
    """lm-eval's ``tasks`` folder (found without importing lm-eval)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("lm-eval is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "tasks"


def yaml_path(name: str) -> Path:
    """The YAML that defines lm-eval task ``name``: from the table, else lm-eval's index."""
    if name in BUILTINS:
        return tasks_dir() / BUILTINS[name].yaml
    for b in BUILTINS.values():
        if b.is_group and name.startswith(b.prefix) and name[len(b.prefix) :] in b.subtasks:
            return (tasks_dir() / b.yaml).parent / f"{name[len(b.prefix) :]}.yaml"
    index = _task_index()
    if name not in index or index[name].yaml_path is None:
        raise KeyError(f"lm-eval has no task {name!r}")
    return Path(index[name].yaml_path)


@functools.lru_cache(maxsize=1)
def _task_index():
    """lm-eval's full task index (scans every YAML it ships: seconds); only for unlisted names."""
    from lm_eval.tasks import TaskManager

    return TaskManager().task_index


def load_definition(name: str, resolve_func: bool = True) -> dict:
    """The built-in YAML of ``name`` fully loaded (``include:`` followed, ``!function`` resolved)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(yaml_path(name), resolve_func=resolve_func)


def read_splits(cfg: dict) -> list[str]:
    """The splits lm-eval 0.4.13's ``ConfigurableTask`` reads for a task config.

    Evaluation docs: ``test_split``, else ``validation_split``. Few-shot pool (loaded even
    at 0 shots): ``fewshot_config.split`` or ``fewshot_split``; else none when the shots
    are written in ``fewshot_config.samples``; else ``training_split``, else
    ``validation_split``.
    """
    out = [cfg.get("test_split") or cfg.get("validation_split")]
    fs = cfg.get("fewshot_config") or {}
    if fs.get("split") or cfg.get("fewshot_split"):
        out.append(fs.get("split") or cfg.get("fewshot_split"))
    elif fs.get("samples") is None:
        out.append(cfg.get("training_split") or cfg.get("validation_split"))
    return [s for i, s in enumerate(out) if s and s not in out[:i]]


def builtin_task_config(name: str, data_files: dict[str, str | Path], num_fewshot: int | None = None) -> dict:
    """The built-in task ``name`` as a config dict reading ``data_files`` (split -> JSONL).

    Only ``dataset_path``/``dataset_name``/``dataset_kwargs`` change (and ``num_fewshot``
    when given); the task keeps its built-in name.
    """
    cfg = load_definition(name)
    needed = read_splits(cfg)
    missing = sorted(set(needed) - set(data_files))
    if missing:
        raise ValueError(f"task {name!r} reads splits {sorted(needed)}; no local file for {missing}")
    cfg.pop("tag", None)  # a local copy must not join the built-in tag groups
    cfg.update(
        {
            "task": name,
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {s: str(data_files[s]) for s in needed}},
        }
    )
    if num_fewshot is not None:
        cfg["num_fewshot"] = num_fewshot
    return cfg


def builtin_specs(name: str, data_dir: str | Path, num_fewshot: int | None = None) -> list:
    """What to put into ``lm_eval.simple_evaluate(tasks=[...])`` for ``name``, reading only
    the files of :func:`benchmark_files` under ``data_dir``.

    A single task: its config dict. A group: an ``lm_eval.api.group.Group`` of subtask
    tasks built from such dicts, carrying the group's own ``aggregate_metric_list``, so
    lm-eval reports the group's score (sample-weighted mean) under the group's name.
    ``num_fewshot=None`` keeps the definition's own count. None of these need lm-eval's
    task index, so ``simple_evaluate(..., task_manager=TaskManager(include_defaults=False))``
    saves its seconds-long scan when every spec is a dict or a group.

    ifeval: points NLTK at ``data_dir/nltk_data`` (writing punkt_tab there if missing) before
    lm-eval imports ifeval's code, which otherwise tries a download that fails offline.
    """
    b, files = builtin(name), benchmark_files(name, data_dir)
    absent = sorted(str(p) for k, p in files.items() if not k.startswith(NLTK_DIR) and not p.is_file())
    if absent:
        raise FileNotFoundError(
            f"built-in task {name!r} reads local files that are not there: {absent}; "
            f"fetch them on a machine with internet: "
            f"python -m workflow_scripts.benchmark_data {name} {data_dir}"
        )
    if name == "ifeval":
        ensure_nltk_punkt(Path(data_dir) / NLTK_DIR)
    if not b.is_group:
        return [builtin_task_config(name, {s: files[s] for s in b.splits}, num_fewshot)]

    from dataclasses import fields

    from lm_eval.api.group import Group
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.config.group import GroupConfig

    gcfg = load_definition(name)
    keep = {f.name for f in fields(GroupConfig)}
    group = Group.from_config({k: v for k, v in gcfg.items() if k in keep} | {"group": name})
    listed = [t if isinstance(t, str) else t["task"] for t in gcfg["task"]]
    if listed != list(b.leaves(name)):
        raise RuntimeError(f"lm-eval's group {name!r} lists {listed}, not the subtasks this module expects")
    for task, folder in b.leaves(name).items():
        cfg = builtin_task_config(task, {s: files[f"{folder}/{s}"] for s in b.splits}, num_fewshot)
        group.add(ConfigurableTask(config=cfg))
    return [group]


def builtin_score(results: dict, name: str, metric: str) -> tuple[float | None, float | None]:
    """(score, stderr) of ``name`` under ``metric`` ("acc_norm,none") in lm-eval's results.

    ``results``: ``simple_evaluate``'s output or its ``"results"`` part. A group's score is
    lm-eval's own aggregate (the subtask scores' mean weighted by sample count, with its
    pooled stderr). (None, None) when the task is absent (a skipped cell); a stderr lm-eval
    could not compute ("N/A", e.g. one item) is None. A metric the task does not report
    raises ``KeyError`` naming those it does.
    """
    if isinstance(results.get("results"), dict):
        results = results["results"]
    row = results.get(name)
    if row is None:
        return None, None
    if metric not in row:
        have = sorted(k for k in row if "," in k and "_stderr," not in k)
        raise KeyError(f"lm-eval reported no {metric!r} for {name!r}; it reported {have}")
    m, filt = metric.split(",", 1)

    def num(v):
        return None if v is None or isinstance(v, str) else float(v)

    return num(row[metric]), num(row.get(f"{m}_stderr,{filt}"))
