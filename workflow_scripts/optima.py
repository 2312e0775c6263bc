"""Where each task's score peaks on the LR/BS axis, and the paper's comparison of categories.

The SmolTulu claim is about *optima* (reasoning tasks do best at a higher LR/BS than pattern
tasks), and a slope pooled over a grid says little about that when scores peak inside it.
Pure functions of the tidy scores, per-item scores and the analysis units
(:func:`workflow_scripts.units.resolve_units`); nothing here reads files.

The optimum of a unit (a task, or a task group scored as the mean of its members, as the paper
reports ARC) for one model x stage: the grid ratio with the highest mean score (over batch
sizes and seeds), refined inside the grid to the vertex of the parabola through it and its two
neighbours on log10(LR/BS); at the smallest or largest grid ratio it is that ratio, flagged
``edge = "low"`` / ``"high"``: a *bound*, not an estimate. Intervals are 95% percentile
intervals over the shared bootstrap of :mod:`workflow_scripts.stats` (items and seeds, drawn
once per model x stage, so units and categories see consistent draws); ``edge_share`` is the
share of draws that peak at an edge.

The category statistic is ``diff = mean log10 optimum(reasoning units) - mean log10
optimum(pattern units)`` (positive: reasoning peaks at a higher LR/BS). Two inferences rest on
it, kept apart in every table and sentence:

* **these tasks**: the bootstrap interval ``diff_lo, diff_hi`` treats the units as fixed;
* **these categories**: the permutation test over units (tasks as the sampled objects). With
  2 + 2 units it cannot reach p < 0.05 (``p_min`` = 1/3); ``tasks_needed`` says how many units
  per category a balanced design needs before it can.

Beside them: a mixed-model second opinion (:mod:`workflow_scripts.mixed_model`), the scores
with excluded cells at chance (:mod:`workflow_scripts.sensitivity`), and optima across model
sizes (:mod:`workflow_scripts.sizes`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .mixed_model import mixed_model
from .stats import CATEGORIES, _ci, _hash, _permutation, _ScoreGroups

OPTIMA_COLUMNS = (
    "model stage unit tasks category role scoring log10_opt log10_opt_lo log10_opt_hi opt_ratio "
    "opt_ratio_lo opt_ratio_hi edge edge_share grid_lo grid_hi n_ratios n_cells n_seeds n_items "
    "n_excluded resampled"
).split()
COMPARISON_COLUMNS = (
    "model stage set scoring diff diff_lo diff_hi bound reasoning_opt reasoning_opt_lo reasoning_opt_hi "
    "pattern_opt pattern_opt_lo pattern_opt_hi n_reasoning "
    "n_pattern p_value n_perm perm_exact p_min tasks_needed mixed_diff mixed_lo mixed_hi mixed_note "
    "agree n_excluded resampled"
).split()
SETS = ("primary", "exploratory")
ALPHA = 0.05


# --------------------------------------------------------------------------- the peak


def peak(xs: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``M`` (draws x grid ratios, means at the ascending log ratios ``xs``): the
    log10 optimum and its edge code (-1: at the lowest ratio, +1: at the highest, 0: inside).

    The highest mean wins (ties: the smallest ratio); inside the grid, the optimum is the
    vertex of the parabola through the best ratio and its neighbours, which lies between
    them. A row with no finite mean gives NaN."""
    M = np.where(np.isfinite(M), M, -np.inf)
    B, R = M.shape
    j = np.argmax(M, axis=1)
    ok = np.isfinite(M[np.arange(B), j])
    opt = xs[j].astype(float)
    edge = np.where(j == 0, -1, np.where(j == R - 1, 1, 0))
    if R == 1:
        edge[:] = 0
    inner = ok & (edge == 0) & (R >= 3)
    if inner.any():
        b = np.flatnonzero(inner)
        jj = j[b]
        x0, x1, x2 = xs[jj - 1], xs[jj], xs[jj + 1]
        y0, y1, y2 = M[b, jj - 1], M[b, jj], M[b, jj + 1]
        num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
        den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
        with np.errstate(invalid="ignore", divide="ignore"):
            v = x1 - 0.5 * num / den
        good = np.isfinite(v) & (np.abs(den) > 1e-15)
        opt[b] = np.where(good, np.clip(v, x0, x2), x1)
    opt[~ok] = np.nan
    return opt, np.where(ok, edge, 0)


def _ratio_means(codes: np.ndarray, n_ratios: int, Y: np.ndarray, W: np.ndarray) -> np.ndarray:
    onehot = (codes[:, None] == np.arange(n_ratios)[None, :]).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("bc,cr->br", W * Y, onehot) / np.einsum("bc,cr->br", W, onehot)


class _Unit:
    """One unit of one model x stage: its cells' scores (point and bootstrap draws)."""

    def __init__(self, spec: dict, members: list, resampled: str):
        self.unit, self.tasks, self.category, self.role = spec["unit"], spec["tasks"], spec["category"], spec["role"]
        self.model, self.stage = members[0].model, members[0].stage
        self.resampled = resampled
        common = set(members[0].run_ids)
        for t in members[1:]:
            common &= set(t.run_ids)
        pos = [{r: i for i, r in enumerate(t.run_ids)} for t in members]
        first = members[0]
        self.run_ids = [r for r in first.run_ids if r in common]
        cols = [[p[r] for r in self.run_ids] for p in pos]
        self.x = first.x[cols[0]]
        self.seeds = first.seeds[cols[0]]
        self.y = np.mean([t.y[c] for t, c in zip(members, cols)], axis=0)
        self.n_items = int(sum(t.n_items for t in members))
        self.n_excluded = int(max(t.n_excluded for t in members))
        self.Y = self.W = None
        if all(t.W is not None for t in members) and len(self.run_ids):
            self.Y = np.mean([t.Y[:, c] for t, c in zip(members, cols)], axis=0)
            self.W = first.W[:, cols[0]]
        self.xs, codes = np.unique(self.x, return_inverse=True)
        self.codes = codes.reshape(-1)

    @property
    def n_cells(self) -> int:
        return len(self.run_ids)

    def optimum(self) -> tuple[float, int]:
        if not self.n_cells:
            return math.nan, 0
        M = _ratio_means(self.codes, len(self.xs), self.y[None], np.ones((1, self.n_cells)))
        opt, edge = peak(self.xs, M)
        return float(opt[0]), int(edge[0])

    def draws(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.Y is None:
            return None
        return peak(self.xs, _ratio_means(self.codes, len(self.xs), self.Y, self.W))


def _units_of(scored: _ScoreGroups, ms: tuple, units: list[dict]) -> list[_Unit]:
    out = []
    for spec in units:
        members = [scored.tasks.get((*ms, t)) for t in spec["tasks"]]
        if any(m is None or m.n_cells == 0 for m in members):
            continue
        u = _Unit(spec, members, scored.resampled[ms])
        if u.n_cells:
            out.append(u)
    return out


# --------------------------------------------------------------------------- tables


def _edge_word(code: int) -> str:
    return {-1: "low", 1: "high"}.get(code, "")


def _optimum_row(u: _Unit, scoring: str) -> tuple[dict, np.ndarray | None]:
    opt, edge = u.optimum()
    row = {
        "model": u.model,
        "stage": u.stage,
        "unit": u.unit,
        "tasks": "+".join(u.tasks),
        "category": u.category,
        "role": u.role,
        "scoring": scoring,
        "log10_opt": opt,
        "log10_opt_lo": math.nan,
        "log10_opt_hi": math.nan,
        "edge": _edge_word(edge),
        "edge_share": math.nan,
        "grid_lo": float(10 ** u.xs[0]),
        "grid_hi": float(10 ** u.xs[-1]),
        "n_ratios": len(u.xs),
        "n_cells": u.n_cells,
        "n_seeds": len(set(u.seeds)),
        "n_items": u.n_items,
        "n_excluded": u.n_excluded,
        "resampled": u.resampled,
    }
    d = u.draws()
    opts = None
    if d is not None:
        opts, edges = d
        row["log10_opt_lo"], row["log10_opt_hi"] = _ci(opts)
        row["edge_share"] = float(np.mean(edges[np.isfinite(opts)] != 0)) if np.isfinite(opts).any() else math.nan
    for k in ("", "_lo", "_hi"):
        v = row[f"log10_opt{k}"]
        row[f"opt_ratio{k}"] = float(10**v) if np.isfinite(v) else math.nan
    return row, opts


def tasks_needed(alpha: float = ALPHA) -> int:
    """Units per category a balanced two-category design needs before the exact two-sided
    permutation test can reach ``alpha`` (its smallest p is 2 / C(2n, n))."""
    n = 1
    while 2 / math.comb(2 * n, n) > alpha:
        n += 1
    return n


def _bound(rows: list[dict]) -> str:
    """Which way the category difference is a bound when some units peak at the grid's edge."""
    ways = set()
    for r in rows:
        if not r["edge"]:
            continue
        up = (r["edge"] == "high") == (r["category"] == "reasoning")  # the true diff can only be larger
        ways.add("lower" if up else "upper")
    return "" if not ways else ways.pop() if len(ways) == 1 else "mixed"


def _comparison_row(ms, name, scoring, units, rows, draws, n_perm, seed, mixed: bool) -> dict:
    row = {
        "model": ms[0],
        "stage": ms[1],
        "set": name,
        "scoring": scoring,
        **dict.fromkeys(("diff", "diff_lo", "diff_hi", "p_value", "p_min"), math.nan),
        **{f"{c}_opt{k}": math.nan for c in CATEGORIES for k in ("", "_lo", "_hi")},
        "bound": _bound(rows),
        "n_reasoning": sum(u.category == "reasoning" for u in units),
        "n_pattern": sum(u.category == "pattern" for u in units),
        "n_perm": 0,
        "perm_exact": False,
        "tasks_needed": tasks_needed(),
        **dict.fromkeys(("mixed_diff", "mixed_lo", "mixed_hi"), math.nan),
        "mixed_note": "",
        "agree": "",
        "n_excluded": max((u.n_excluded for u in units), default=0),
        "resampled": units[0].resampled if units else "",
    }
    opts = np.array([r["log10_opt"] for r in rows])
    use = np.isfinite(opts)
    is_r = np.array([u.category == "reasoning" for u in units], dtype=bool)
    if not ((use & is_r).any() and (use & ~is_r).any()):
        row["mixed_note"] = "needs a unit of each category"
        return row
    row["reasoning_opt"] = float(opts[use & is_r].mean())
    row["pattern_opt"] = float(opts[use & ~is_r].mean())
    row["diff"] = obs = row["reasoning_opt"] - row["pattern_opt"]
    if all(d is not None for d, k in zip(draws, use) if k):
        D = np.stack([d for d, k in zip(draws, use) if k], axis=1)
        r = is_r[use]
        with np.errstate(invalid="ignore"):
            row["diff_lo"], row["diff_hi"] = _ci(D[:, r].mean(1) - D[:, ~r].mean(1))
            row["reasoning_opt_lo"], row["reasoning_opt_hi"] = _ci(D[:, r].mean(1))
            row["pattern_opt_lo"], row["pattern_opt_hi"] = _ci(D[:, ~r].mean(1))
    rng = np.random.default_rng([seed, _hash(ms[0]), _hash(ms[1]), _hash(name), 2])
    row.update(_permutation(opts[use], is_r[use], obs, n_perm, rng))
    if mixed:
        row.update(mixed_model([u for u, k in zip(units, use) if k]))
        boot = interval_side(row["diff_lo"], row["diff_hi"])
        mix = interval_side(row["mixed_lo"], row["mixed_hi"])
        row["agree"] = "" if not (boot and mix) else "yes" if boot == mix else "no"
    return row


def interval_side(lo: float, hi: float) -> str:
    """'higher' / 'lower' when a 95% interval excludes 0 on that side, 'unclear' when it covers 0."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return ""
    return "higher" if lo > 0 else "lower" if hi < 0 else "unclear"


# --------------------------------------------------------------------------- the analysis


def optima_tables(
    scores: pd.DataFrame,
    items: pd.DataFrame | None,
    units: list[dict],
    n_boot: int = 1000,
    n_perm: int = 2000,
    seed: int = 0,
    scoring: str = "excluded",
    mixed: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(optima, comparison, draws) for one scoring of the cells.

    ``optima``: one row per model x stage x unit (:data:`OPTIMA_COLUMNS`). ``comparison``: one
    row per model x stage x set (``primary`` when any unit is primary, and ``exploratory``)
    with the category difference and both inferences (:data:`COMPARISON_COLUMNS`).
    ``draws``: {(model, stage, unit): bootstrap draws of its log10 optimum} for
    :func:`size_table`."""
    scored = _ScoreGroups(scores, items, n_boot, seed)
    # primary units as pre-registered, then exploratory ones by name: no dependence on task order
    units = [u for u in units if u["role"] == "primary"] + sorted(
        (u for u in units if u["role"] != "primary"), key=lambda u: u["unit"]
    )
    opt_rows, cmp_rows, draws = [], [], {}
    for ms in scored.groups:
        us = _units_of(scored, ms, units)
        made = [_optimum_row(u, scoring) for u in us]
        for u, (row, d) in zip(us, made):
            opt_rows.append(row)
            draws[(*ms, u.unit)] = d
        for name in SETS:
            pick = [i for i, u in enumerate(us) if u.role == name and u.category in CATEGORIES]
            if not pick:
                continue
            cmp_rows.append(
                _comparison_row(
                    ms,
                    name,
                    scoring,
                    [us[i] for i in pick],
                    [made[i][0] for i in pick],
                    [made[i][1] for i in pick],
                    n_perm,
                    seed,
                    mixed,
                )
            )
    return (
        pd.DataFrame(opt_rows, columns=OPTIMA_COLUMNS),
        pd.DataFrame(cmp_rows, columns=COMPARISON_COLUMNS),
        draws,
    )
