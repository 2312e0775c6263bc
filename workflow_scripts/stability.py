"""How much a cell's outcome moves when only its seed changes: the ``stability`` table.

Per model x stage x ratio x task (its primary metric): the standard deviation of the score
over seeds at each (ratio, batch size), pooled over the batch sizes of that ratio
(``sqrt(sum((n_i - 1) s_i^2) / sum(n_i - 1))``, ``df`` = ``sum(n_i - 1)``), beside the same
spread of the final training loss (``runs.csv``'s ``final_loss``, one value per run, so the
same on every task row of a ratio). Only runs that ended ``ok`` and were scored count; with
one seed at every batch size of a ratio there is nothing to pool (``df`` 0, the spread
empty), and analysis.md says so per model x stage (:func:`stability_sentences`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = [
    "model",
    "stage",
    "ratio",
    "task",
    "category",
    "metric",
    "n_runs",
    "n_seeds",
    "n_batch_sizes",
    "df",
    "score_mean",
    "score_sd",
    "loss_df",
    "final_loss_mean",
    "final_loss_sd",
]
ONE_SEED = "one seed: the spread across seeds cannot be measured; add seeds"


def pooled_sd(values: pd.Series, groups: pd.Series) -> tuple[float, int]:
    """The within-group standard deviation pooled over ``groups`` and its degrees of freedom;
    (nan, 0) when no group has two values."""
    ok = values.notna()
    values, groups = values[ok].astype(float), groups[ok]
    ss, df = 0.0, 0
    for _, v in values.groupby(groups, sort=True):
        if len(v) > 1:
            ss += float(((v - v.mean()) ** 2).sum())
            df += len(v) - 1
    return (float(np.sqrt(ss / df)) if df else float("nan")), df


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"].astype(str) == "ok"] if "status" in df.columns else df


def stability_table(scores: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per model x stage x ratio x task: the seed-to-seed spread of the primary
    score and of the final training loss (``runs``; None: the loss columns stay empty)."""
    prim = _ok(scores[scores["primary"]])
    prim = prim[prim["value"].notna()]
    loss = {}
    if runs is not None and "final_loss" in runs.columns:
        r = _ok(runs)
        r = r[np.isfinite(pd.to_numeric(r["final_loss"], errors="coerce"))]
        for key, g in r.groupby(["model", "stage", "ratio"], sort=True):
            sd, df = pooled_sd(g["final_loss"], g["batch_size"])
            loss[key] = (float(g["final_loss"].mean()), sd, df)
    rows = []
    for (model, stage, ratio, task), g in prim.groupby(["model", "stage", "ratio", "task"], sort=True):
        sd, df = pooled_sd(g["value"], g["batch_size"])
        lmean, lsd, ldf = loss.get((model, stage, ratio), (float("nan"), float("nan"), 0))
        rows.append(
            {
                "model": model,
                "stage": stage,
                "ratio": ratio,
                "task": task,
                "category": g["category"].iloc[0],
                "metric": g["metric"].iloc[0],
                "n_runs": int(g["run_id"].nunique()),
                "n_seeds": int(g["seed"].nunique()),
                "n_batch_sizes": int(g["batch_size"].nunique()),
                "df": df,
                "score_mean": float(g["value"].mean()),
                "score_sd": sd,
                "loss_df": ldf,
                "final_loss_mean": lmean,
                "final_loss_sd": lsd,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def stability_sentences(stability: pd.DataFrame) -> list[str]:
    """One sentence per model x stage: the one-seed warning, or the range of the spread."""
    out = []
    for (model, stage), g in stability.groupby(["model", "stage"], sort=True):
        head = f"{model} / {stage}, stability across seeds"
        measured = g[g["df"] > 0]
        if measured.empty:
            out.append(f"{head}: {ONE_SEED}.")
            continue
        ratios = g["ratio"].nunique()
        where = (
            ""
            if measured["ratio"].nunique() == ratios
            else (f" (measured at {measured['ratio'].nunique()} of {ratios} ratios; the others have one seed)")
        )
        worst = measured.sort_values(["score_sd", "ratio", "task"], ascending=[False, True, True]).iloc[0]
        text = (
            f"{head}{where}: the sd of the primary score over seeds (pooled over batch sizes) ranges "
            f"{measured['score_sd'].min():.3g} to {measured['score_sd'].max():.3g} (median "
            f"{measured['score_sd'].median():.3g}; largest: {worst['task']} at LR/BS {worst['ratio']:.3g}, "
            f"{int(worst['n_seeds'])} seeds)"
        )
        lsd = measured.drop_duplicates("ratio")["final_loss_sd"].dropna()
        if len(lsd):
            text += f"; of the final training loss {lsd.min():.3g} to {lsd.max():.3g}"
        out.append(text + ".")
    return out
