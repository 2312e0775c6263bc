"""lm-eval's own benchmark definitions on local files (no hub at evaluation time).

``builtin_task_config("gsm8k", {"train": ..., "test": ...})`` loads lm-eval's built-in YAML
(following its ``include:`` and ``!function`` entries) and replaces only the dataset fields,
so the real prompts, few-shot settings, filters and metrics run on files in the benchmark's
own schema: prefetched copies of the real data on an offline compute node, or the project's
synthetic stand-ins in tests. The task keeps its built-in name.

Splits lm-eval reads (it loads the few-shot pool even for 0-shot tasks):
gsm8k test+train; arc_* test+train; hellaswag validation+train; piqa validation+train.

``lm_eval.tasks._yaml_loader`` is private to lm-eval; the pin in pyproject.toml and
tests/test_builtin_tasks.py guard it.
"""

from __future__ import annotations

from pathlib import Path

SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")


def builtin_task_config(name: str, data_files: dict[str, str | Path]) -> dict:
    """The built-in task ``name`` as a config dict reading ``data_files`` (split -> JSONL)."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    index = TaskManager().task_index
    if name not in index:
        raise KeyError(f"lm-eval has no task {name!r}")
    cfg = load_yaml(index[name].yaml_path, resolve_func=True)
    needed = {cfg[k] for k in SPLIT_KEYS if cfg.get(k)}
    missing = sorted(needed - set(data_files))
    if missing:
        raise ValueError(f"task {name!r} reads splits {sorted(needed)}; no local file for {missing}")
    cfg.pop("tag", None)  # a local copy must not join the built-in tag groups
    cfg.update({"task": name, "dataset_path": "json", "dataset_name": None,
                "dataset_kwargs": {"data_files": {s: str(p) for s, p in data_files.items() if s in needed}}})
    return cfg
