"""The parameter count of each model of a study (``results/tables/models.csv``, written by
rule aggregate): as the training jobs recorded it in ``run.json`` (``parameters``: the loaded
base model's ``num_parameters()``), else as the config states it (``models[].parameters``, for
cells trained before run.json recorded it), else unknown."""

from __future__ import annotations

import json

import pandas as pd

from .grid import split_run_id

COLUMNS = ["model", "parameters", "source"]


def recorded_parameters(cells: list[dict]) -> dict[str, dict[int, str]]:
    """model -> {parameter count: the first run id that recorded it}, from the cells' run.json."""
    out: dict[str, dict[int, str]] = {}
    for c in cells:
        with open(c["run_json"]) as f:
            count = json.load(f).get("parameters")
        if count is not None:
            out.setdefault(split_run_id(c["run_id"])[0], {}).setdefault(int(count), c["run_id"])
    return out


def models_table(cells: list[dict], models: list[dict]) -> pd.DataFrame:
    """One row per model (``models``, the config's list, in its order): ``parameters`` from its
    cells' run.json (they must agree), else ``models[].parameters``, else empty; ``source``
    says which (``run.json``, ``config``, or empty)."""
    recorded = recorded_parameters(cells)
    rows = []
    for m in models:
        counts = recorded.get(m["name"], {})
        if len(counts) > 1:
            found = ", ".join(f"{n:,} ({rid})" for n, rid in counts.items())
            raise ValueError(
                f"model {m['name']!r}: its cells' run.json record different parameter counts: {found}. "
                "All cells of a model start from one base model; retrain those whose base model was another."
            )
        if counts:
            rows.append({"model": m["name"], "parameters": next(iter(counts)), "source": "run.json"})
        elif m.get("parameters") is not None:
            rows.append({"model": m["name"], "parameters": int(m["parameters"]), "source": "config"})
        else:
            rows.append({"model": m["name"], "parameters": None, "source": ""})
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["parameters"] = df["parameters"].astype("Int64")  # integers; empty (NaN) when unknown
    return df
