"""Optima against model size: does the best LR/BS move with the parameter count?

Reads the optima of :func:`workflow_scripts.optima.optima_tables` (the main scoring) and their
bootstrap draws; each model's draws are its own (the bootstrap is seeded per model x stage),
so a fit across sizes draws each size independently.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .stats import CATEGORIES, _ci

SIZES_COLUMNS = [
    "stage",
    "level",
    "name",
    "category",
    "model",
    "parameters",
    "log10_opt",
    "log10_opt_lo",
    "log10_opt_hi",
    "edge",
    "side",
    "changes_side",
    "alpha",
    "alpha_lo",
    "alpha_hi",
    "n_sizes",
]


def _fit_alpha(logn: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """OLS slope of each row of Y (draws x sizes) on log10 parameters."""
    xc = logn - logn.mean()
    with np.errstate(invalid="ignore"):
        return (Y - Y.mean(1, keepdims=True)) @ xc / (xc @ xc)


def size_table(optima: pd.DataFrame, draws: dict, parameters: dict) -> pd.DataFrame:
    """Optima against model size, per stage: one row per unit (and per category: the mean of
    its units' log10 optima) and model, with a power-law fit optimum ~ N^alpha (log10 optimum
    on log10 parameters) when three or more sizes have a known parameter count.

    ``side``: whether a unit peaks above (``higher``) or below (``lower``) the mean optimum of
    that model's units; ``changes_side``: it is on different sides at different sizes."""
    main = optima[optima["scoring"] == "excluded"]
    rows = []
    for stage, g in main.groupby("stage", sort=False):
        models = [m for m in dict.fromkeys(g["model"]) if np.isfinite(parameters.get(m, math.nan))]
        if len(models) < 2:
            continue
        models.sort(key=lambda m: parameters[m])
        logn = np.log10([parameters[m] for m in models])
        centre = {m: g.loc[g["model"] == m, "log10_opt"].mean() for m in models}
        series = {}
        for unit, ug in g.groupby("unit", sort=False):
            if set(ug["model"]) >= set(models):
                by = ug.set_index("model")
                series[("unit", unit, by["category"].iloc[0])] = {
                    m: (by.loc[m], draws.get((m, stage, unit))) for m in models
                }
        for cat in CATEGORIES:
            names = [k for k in series if k[0] == "unit" and k[2] == cat]
            if not names:
                continue
            agg = {}
            for m in models:
                vals = [series[k][m][0] for k in names]
                ds = [series[k][m][1] for k in names]
                point = {
                    "log10_opt": float(np.mean([v["log10_opt"] for v in vals])),
                    "edge": ",".join(sorted({v["edge"] for v in vals if v["edge"]})),
                }
                d = np.mean(ds, axis=0) if all(x is not None for x in ds) else None
                agg[m] = (point, d)
            series[("category", cat, cat)] = agg
        for (level, name, cat), per in series.items():
            pts = np.array([per[m][0]["log10_opt"] for m in models], dtype=float)
            ds = [per[m][1] for m in models]
            fit = {"alpha": math.nan, "alpha_lo": math.nan, "alpha_hi": math.nan}
            if len(models) >= 3 and np.isfinite(pts).all():
                fit["alpha"] = float(_fit_alpha(logn, pts[None])[0])
                if all(d is not None for d in ds):
                    fit["alpha_lo"], fit["alpha_hi"] = _ci(_fit_alpha(logn, np.stack(ds, axis=1)))
            sides = {}
            for m, p in zip(models, pts):
                sides[m] = "" if level != "unit" or not np.isfinite(p) else "higher" if p > centre[m] else "lower"
            changes = level == "unit" and len({s for s in sides.values() if s}) > 1
            for m, p, d in zip(models, pts, ds):
                lo, hi = _ci(d) if d is not None else (math.nan, math.nan)
                rows.append(
                    {
                        "stage": stage,
                        "level": level,
                        "name": name,
                        "category": cat,
                        "model": m,
                        "parameters": float(parameters[m]),
                        "log10_opt": float(p),
                        "log10_opt_lo": lo,
                        "log10_opt_hi": hi,
                        "edge": per[m][0]["edge"],
                        "side": sides[m],
                        "changes_side": bool(changes),
                        **fit,
                        "n_sizes": len(models),
                    }
                )
    return pd.DataFrame(rows, columns=SIZES_COLUMNS)
