"""The training set of a stage: synthetic (demo) or a seeded subset of a hub dataset.

SFT rows are chat ``messages``; DPO rows are TRL's explicit-prompt conversational form
(``prompt``, ``chosen``, ``rejected``). Hub subsets are written on the login node (the
rule is local), so compute nodes only read the JSONL file; ``source.json`` beside it
records the dataset id, revision and fingerprint for every run's ``run.json``.
"""

from __future__ import annotations

import random

from .grid import stage_kind
from .io import write_jsonl
from .synthetic import build_preference_set, build_sft_set


def _subset_order(n_rows: int, dataset: dict, seed: int) -> list[int]:
    """The first ``subset_size`` rows of a seeded permutation: a larger subset holds a smaller one."""
    order = list(range(n_rows))
    random.Random(seed).shuffle(order)
    return order[: dataset.get("subset_size") or n_rows]


def load_hub_dataset(dataset: dict):
    from datasets import load_dataset

    return load_dataset(dataset["id"], revision=dataset.get("revision"), split=dataset.get("split", "train"))


def preference_row(row: dict) -> dict:
    """A hub preference row (``chosen``/``rejected`` full conversations, as in the Tulu 3
    preference mixture) -> explicit prompt + the two final assistant turns."""
    chosen, rejected = row["chosen"], row["rejected"]
    if chosen[:-1] != rejected[:-1] or chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise ValueError(
            f"row {row.get('id', '?')}: chosen and rejected must share the prompt turns and "
            "end in one assistant turn each"
        )
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def hub_rows(ds, dataset: dict, seed: int, kind: str) -> list[dict]:
    rows = []
    for i in _subset_order(len(ds), dataset, seed):
        row = ds[i]
        out = {"messages": row["messages"]} if kind == "sft" else preference_row(row)
        out["source"] = row.get("source", dataset["id"])
        rows.append(out)
    return rows


def dataset_record(ds, dataset: dict, rows: int) -> dict:
    return {
        "id": dataset["id"],
        "revision": dataset.get("revision"),
        "split": dataset.get("split", "train"),
        "fingerprint": getattr(ds, "_fingerprint", None),
        "dataset_rows": len(ds),
        "subset_rows": rows,
    }


def prepare_stage_data(stage: str, dataset: dict, train_files: dict, out_path, seed: int) -> dict:
    """Write the stage's training set as JSONL; return a record of where it came from."""
    kind = stage_kind(stage)
    if dataset["source"] == "synthetic":
        build = build_sft_set if kind == "sft" else build_preference_set
        n = build(train_files, out_path, seed)
        return {"source": "synthetic", "tasks": sorted(train_files), "seed": seed, "subset_rows": n}
    ds = load_hub_dataset(dataset)
    rows = hub_rows(ds, dataset, seed, kind)
    write_jsonl(rows, out_path)
    return {"source": "hub", **dataset_record(ds, dataset, len(rows))}
