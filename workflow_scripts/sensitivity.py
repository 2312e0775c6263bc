"""What the statistics lost, and what they would say had they kept it.

Sensitivity: :func:`impute_excluded` scores every excluded (diverged or failed) cell at
chance (1 / number of choices per item for multiple-choice tasks, 0 for generative ones),
so the same statistics can be recomputed with them; diverged cells cluster at high ratios,
and dropping them moves optima upward.
"""

from __future__ import annotations

import pandas as pd

EXCLUSION_COLUMNS = ["model", "stage", "ratio", "n_runs", "n_excluded", "statuses"]


def impute_excluded(scores: pd.DataFrame, items: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Scores (and items) with every excluded primary cell scored at chance.

    A primary row counts as excluded when its ``status`` is not ``ok`` or its value is
    missing. Its value becomes the task's chance level: the mean over items of each item's
    chance (``items["chance"]``: 1 / choices for multiple-choice items, 0 for generative
    ones), or 0 without items; with items, the cell gets one item row per item at its chance.
    """
    out = scores.copy()
    prim = out["primary"].astype(str).str.lower() == "true"
    bad = prim & ((out["status"].astype(str) != "ok") if "status" in out else False)
    bad |= prim & pd.to_numeric(out["value"], errors="coerce").isna()
    if not bad.any():
        return out, items
    chance_items = None
    if items is not None and len(items):
        cols = ["task", "doc_id", "chance"] if "chance" in items else ["task", "doc_id"]
        chance_items = items[cols].drop_duplicates(["task", "doc_id"]).copy()
        if "chance" not in chance_items:
            chance_items["chance"] = 0.0
    level = chance_items.groupby("task")["chance"].mean() if chance_items is not None else pd.Series(dtype=float)
    out.loc[bad, "value"] = out.loc[bad, "task"].map(level).fillna(0.0).to_numpy()
    if "status" in out:
        out.loc[bad, "status"] = "ok"
    if chance_items is None:
        return out, items
    cells = out.loc[bad, ["run_id", "task"]].drop_duplicates()
    keep = items.merge(cells.assign(_drop=True), on=["run_id", "task"], how="left")["_drop"].isna().to_numpy()
    items = items[keep]  # a diverged cell's own samples (if any) are replaced by chance
    added = cells.merge(chance_items, on="task")
    added = added.rename(columns={"chance": "score"})
    if "chance" in items:
        added["chance"] = added["score"]
    return out, pd.concat([items, added[items.columns]], ignore_index=True)


def exclusions(scores: pd.DataFrame) -> pd.DataFrame:
    """Per model x stage x ratio: how many runs the statistics lost, and why."""
    prim = scores[scores["primary"].astype(str).str.lower() == "true"].copy()
    if "ratio" not in prim:
        prim["ratio"] = prim["learning_rate"].astype(float) / prim["batch_size"].astype(float)
    prim["_bad"] = pd.to_numeric(prim["value"], errors="coerce").isna()
    if "status" in prim:
        prim["_bad"] |= prim["status"].astype(str) != "ok"
    else:
        prim["status"] = "ok"
    runs = prim.groupby(["model", "stage", "ratio", "run_id"], sort=True).agg(
        bad=("_bad", "any"), status=("status", "first")
    )
    rows = []
    for (model, stage, ratio), g in runs.groupby(level=[0, 1, 2], sort=True):
        bad = g[g["bad"]]
        counts = bad["status"].where(bad["status"] != "ok", "no score").value_counts().sort_index()
        rows.append(
            {
                "model": model,
                "stage": stage,
                "ratio": float(ratio),
                "n_runs": len(g),
                "n_excluded": len(bad),
                "statuses": ", ".join(f"{k} {v}" for k, v in counts.items()),
            }
        )
    return pd.DataFrame(rows, columns=EXCLUSION_COLUMNS)
