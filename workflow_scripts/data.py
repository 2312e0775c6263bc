"""The SFT training set of a stage: synthetic (demo) or a seeded subset of a hub dataset."""

from __future__ import annotations

import random

from .synthetic import build_sft_set, write_jsonl


def hub_subset(dataset: dict, seed: int) -> list[dict]:
    """A deterministic subset of a hub chat dataset (e.g. allenai/tulu-3-sft-mixture).

    Rows keep their ``messages`` column; the subset is the first ``subset_size`` rows of a
    seeded permutation, so a larger subset contains a smaller one.
    """
    from datasets import load_dataset

    ds = load_dataset(dataset["id"], revision=dataset.get("revision"), split=dataset.get("split", "train"))
    order = list(range(len(ds)))
    random.Random(seed).shuffle(order)
    n = dataset.get("subset_size") or len(order)
    return [{"messages": ds[i]["messages"], "source": ds[i].get("source", dataset["id"])} for i in order[:n]]


def prepare_sft_data(dataset: dict, train_files: dict, out_path, seed: int) -> int:
    """Write the stage's training set as JSONL rows of chat ``messages``; return the row count."""
    if dataset["source"] == "synthetic":
        return build_sft_set(train_files, out_path, seed)
    rows = hub_subset(dataset, seed)
    write_jsonl(rows, out_path)
    return len(rows)
