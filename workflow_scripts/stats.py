"""Statistics for the LR/BS ratio study: slopes, the reasoning-vs-pattern split, ratio invariance.

Pure functions of the tidy scores table (``results/tables/scores.csv``) and, optionally, of
per-item scores; nothing here reads or writes files.

Inputs
------
``scores``
    The tidy table written by :mod:`workflow_scripts.aggregate`: one row per run x task x
    metric with (at least) ``model, stage, run_id, batch_size, seed, task, category, primary,
    value`` and ``ratio`` and/or ``learning_rate``. Only rows with ``primary == True`` are
    used (one per run and task). A *cell* below is one such row: one trained run scored on
    one task. Grid values (ratio, learning rate, batch size) are grouped by exact equality:
    they are canonical floats (:func:`workflow_scripts.numbers.canonical`), and the tables
    write every float so that it reads back to the same float. A ratio or learning rate
    derived from the other is made canonical the same way.
``items``
    Optional per-item scores, a DataFrame with columns ``run_id, task, doc_id, score`` (0/1 or
    fractional), built by the caller from lm-eval's sample files. ``doc_id`` must name the
    same evaluation item in every run of a task. When given, a cell's score is the mean of
    its item scores (a warning is raised where that differs from ``value``, e.g. a metric
    that is not a plain mean over items, or items from the wrong lm-eval filter).

Exclusions (missing or diverged cells)
--------------------------------------
If ``scores`` has a ``status`` column, primary rows whose status is not ``"ok"`` are
dropped; rows whose ``value`` is NaN are dropped too. Nothing is imputed: the fits use the
remaining cells, and every result reports ``n_excluded`` (primary rows dropped, per result
row). A group left with too few cells gets NaN estimates, not a guess.

The bootstrap (shared by all three statistics)
----------------------------------------------
Two sources of noise are resampled, jointly, in each of ``n_boot`` draws:

* **evaluation items**: the doc_ids of a task are drawn with replacement, and the *same*
  draw is applied to every run of that task, so cell scores stay paired (a hard item is
  hard in every cell; that pairing is what makes slopes precise). Different tasks get
  independent draws.
* **seeds** (training randomness): the seed labels of a model x stage are drawn with
  replacement; a cell's weight in the fit is the number of times its seed was drawn. The
  same seed draw is used for every task of that model x stage (a run is scored on all
  tasks), so statistics that combine tasks (the split) see consistent draws.

Fallbacks: with one seed and items, only items are resampled (training noise is then not
in the interval: say so when you report it); with one seed and no items, runs are resampled
with replacement *within each ratio* (every ratio stays in every draw); with nothing to
resample (``n_boot=0``, or one run per ratio, one seed and no items) intervals are NaN.
The ``resampled`` column of every result names what was resampled.

Intervals are 95% percentile intervals (2.5th and 97.5th percentiles of the draws). Draws
are seeded with ``np.random.default_rng`` from ``seed`` and a stable hash of
(model, stage[, task]), so results do not depend on row order or on which other groups are
in the table, and the three public functions use identical draws for the same inputs.

Known properties (measured by simulation, see ``tests/test_stats.py``; 5 ratios x 2 batch
sizes x 2 seeds, 150 Bernoulli items per task, nominal 95%):

* Items and seeds are *crossed* (every seed is scored on every item). Resampling both (the
  "pigeonhole" bootstrap, Owen, Ann. Appl. Stat. 1(2), 2007) counts the item x run noise
  (the Bernoulli noise of each answer) more than once, so intervals are *conservative* when
  that noise dominates: with no run-to-run training noise the bootstrap sd of a slope is
  about 1.4x the true sd (coverage 0.99); with training noise sd 0.02 per cell (half the
  per-cell binomial sd), slope coverage 0.98 and split coverage 0.995, i.e. a split test
  with a false-positive rate near 0.5% instead of 5%. Expect fewer significant results
  than a perfectly calibrated interval would give.
* Resampling only 2-3 seeds underestimates the training-noise part of the variance by the
  factor (S-1)/S and gives it a coarse, discrete distribution: when run-to-run noise
  dominates, coverage drops below nominal (slope 0.91, split 0.935 with training-noise sd
  0.05). More seeds help; with one seed training noise is not in the interval at all.
* Percentile intervals assume the bootstrap distribution is roughly centred on the
  estimate; that holds for slopes and the split (near-linear in the cell scores), less for
  k = -b/a, whose interval is wide and skewed when a is small.
"""

from __future__ import annotations

import itertools
import math
import warnings
import zlib

import numpy as np
import pandas as pd

from .numbers import canonical

CATEGORIES = ("reasoning", "pattern")
NORMALISERS = ("item_sd", "cell_sd", "none")
SLOPE_COLUMNS = [
    "model",
    "stage",
    "task",
    "category",
    "slope",
    "slope_lo",
    "slope_hi",
    "best_ratio",
    "best_ratio_lo",
    "best_ratio_hi",
    "n_cells",
    "n_seeds",
    "n_items",
    "n_excluded",
    "resampled",
]
SPLIT_COLUMNS = [
    "model",
    "stage",
    "split",
    "split_lo",
    "split_hi",
    "p_value",
    "n_perm",
    "reasoning_mean",
    "pattern_mean",
    "n_tasks",
    "perm_exact",
    "p_min",
    "normaliser",
    "n_excluded",
    "resampled",
]
INVARIANCE_COLUMNS = [
    "model",
    "stage",
    "task",
    "category",
    "a",
    "b",
    "k",
    "k_lo",
    "k_hi",
    "rss_ratio",
    "rss_sqrt",
    "rss_free",
    "verdict",
    "reason",
    "n_cells",
    "n_batch_sizes",
    "n_excluded",
    "resampled",
]

__all__ = [
    "task_slopes",
    "split_statistic",
    "ratio_invariance",
    "CATEGORIES",
    "NORMALISERS",
    "SLOPE_COLUMNS",
    "SPLIT_COLUMNS",
    "INVARIANCE_COLUMNS",
]


# --------------------------------------------------------------------------- preparation


def _hash(x) -> int:
    return zlib.crc32(str(x).encode())


def _sorted(values) -> list:
    try:
        return sorted(values)
    except TypeError:  # mixed types: any fixed order will do
        return sorted(values, key=lambda v: (type(v).__name__, str(v)))


def _codes(values: np.ndarray) -> np.ndarray:
    """Integer codes of grid values (ratio, learning rate, batch size), in ascending order of
    the values; equal codes for equal values, compared exactly: grid values are canonical
    floats (numbers.canonical) and the tables write every float so that it reads back
    exactly, so one grid value is one float."""
    return np.unique(np.asarray(values, dtype=float), return_inverse=True)[1].reshape(-1)


def _as_bool(s: pd.Series) -> pd.Series:
    if s.dtype == bool:
        return s
    return s.map(lambda v: v if isinstance(v, (bool, np.bool_)) else str(v).strip().lower() == "true").astype(bool)


def _primary_cells(scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept primary cells with log columns, all primary rows with an ``_excluded`` flag)."""
    need = {"model", "stage", "run_id", "batch_size", "seed", "task", "category", "primary", "value"}
    missing = need - set(scores.columns)
    if missing:
        raise KeyError(f"scores lacks columns {sorted(missing)}")
    if "ratio" not in scores.columns and "learning_rate" not in scores.columns:
        raise KeyError("scores needs a ratio or a learning_rate column")
    prim = scores[_as_bool(scores["primary"])].copy()
    bs = prim["batch_size"].astype(float)
    # a derived grid value is canonical, as grid.Cell makes it, so that it groups exactly
    if "ratio" not in prim.columns:
        prim["ratio"] = (prim["learning_rate"].astype(float) / bs).map(canonical)
    if "learning_rate" not in prim.columns:
        prim["learning_rate"] = (prim["ratio"].astype(float) * bs).map(canonical)
    prim["value"] = pd.to_numeric(prim["value"], errors="coerce")
    bad = prim["value"].isna()
    for col in ("ratio", "learning_rate", "batch_size"):
        v = pd.to_numeric(prim[col], errors="coerce")
        bad |= ~(v > 0) | ~np.isfinite(v)
    if "status" in prim.columns:
        bad |= prim["status"].astype(str) != "ok"
    prim["_excluded"] = bad.to_numpy()
    kept = prim[~prim["_excluded"]].copy()
    dup = kept.duplicated(["model", "stage", "run_id", "task"], keep=False)
    if dup.any():
        raise ValueError(
            "more than one primary row for run x task: "
            f"{kept.loc[dup, ['run_id', 'task']].drop_duplicates().head().values.tolist()}"
        )
    kept["x"] = np.log10(kept["ratio"].astype(float))  # log10 LR/BS
    kept["u"] = np.log10(kept["learning_rate"].astype(float))  # log10 LR
    kept["v"] = np.log10(kept["batch_size"].astype(float))  # log10 BS
    kept = kept.sort_values(["model", "stage", "task", "x", "v", "seed", "run_id"], kind="stable")
    return kept.reset_index(drop=True), prim


def _item_matrices(
    items: pd.DataFrame, cells: pd.DataFrame, gcode: np.ndarray, local: np.ndarray, sizes: list[int]
) -> list[np.ndarray]:
    """Per task group, a cells x items matrix of item scores (NaN where a run lacks an item)."""
    need = {"run_id", "task", "doc_id", "score"}
    missing = need - set(items.columns)
    if missing:
        raise KeyError(f"items lacks columns {sorted(missing)}")
    key = pd.DataFrame(
        {"run_id": cells["run_id"].to_numpy(), "task": cells["task"].to_numpy(), "_row": np.arange(len(cells))}
    )
    m = items[["run_id", "task", "doc_id", "score"]].merge(key, on=["run_id", "task"], how="inner")
    if m.duplicated(["_row", "doc_id"]).any():
        raise ValueError("items has more than one score for some run x task x doc_id")
    have = np.zeros(len(cells), dtype=bool)
    have[m["_row"].to_numpy()] = True
    if not have.all():
        lack = cells.loc[~have, ["run_id", "task"]].head(5).values.tolist()
        raise ValueError(
            f"{int((~have).sum())} kept cells have no items (e.g. {lack}); pass items for "
            "every scored run x task, or mark those cells excluded via status"
        )
    rows = m["_row"].to_numpy()
    g_of = gcode[rows]
    order = np.argsort(g_of, kind="stable")
    bounds = np.searchsorted(g_of[order], np.arange(len(sizes) + 1))
    docs_all = m["doc_id"].to_numpy()
    score_all = pd.to_numeric(m["score"], errors="coerce").to_numpy(float)
    mats = []
    for g, n in enumerate(sizes):
        idx = order[bounds[g] : bounds[g + 1]]
        docs, dcode = np.unique(docs_all[idx], return_inverse=True)
        mat = np.full((n, len(docs)), np.nan)
        mat[local[rows[idx]], dcode] = score_all[idx]
        mats.append(mat)
    return mats


class _Task:
    """One model x stage x task: the kept cells, point values and bootstrap draws."""

    def __init__(self, key, cols: dict, rows: np.ndarray, mat, n_excluded: int, category: str):
        self.model, self.stage, self.task = key
        self.category = category
        self.n_excluded = n_excluded
        self.run_ids = cols["run_id"][rows]
        self.seeds = cols["seed"][rows]
        self.x = cols["x"][rows]
        self.u = cols["u"][rows]
        self.v = cols["v"][rows]
        self.ratio = cols["ratio"][rows]
        self.lr = cols["learning_rate"][rows]
        self.bs = cols["batch_size"][rows]
        self.mat = mat
        if mat is not None:
            with np.errstate(invalid="ignore"):
                self.y = np.nanmean(mat, axis=1)
                self.y2 = np.nanmean(mat**2, axis=1)
            diff = np.abs(self.y - cols["value"][rows])
            if np.nanmax(diff, initial=0.0) > 1e-6:
                warnings.warn(
                    f"{self.model}/{self.stage}/{self.task}: item means differ from the "
                    f"table's value in {int((diff > 1e-6).sum())} cells (max {np.nanmax(diff):.3g}); "
                    "using item means",
                    stacklevel=3,
                )
        else:
            self.y = cols["value"][rows]
            self.y2 = None
        self.n_items = mat.shape[1] if mat is not None else 0
        self.Y = self.Y2 = self.W = None  # filled by _ScoreGroups

    @property
    def n_cells(self) -> int:
        return len(self.y)

    @property
    def n_seeds(self) -> int:
        return len(np.unique(self.seeds))

    def point(self):
        """(Y, Y2, W) of the observed data, shaped like one bootstrap draw."""
        y2 = None if self.y2 is None else self.y2[None]
        return self.y[None], y2, np.ones((1, self.n_cells))


class _ScoreGroups:
    """All groups of a scores table, with the bootstrap draws made once."""

    def __init__(self, scores: pd.DataFrame, items, n_boot: int, seed: int):
        if n_boot < 0:
            raise ValueError("n_boot must be >= 0")
        cells, prim = _primary_cells(scores)
        self.n_boot = int(n_boot)
        self.seed = int(seed)
        keys = ["model", "stage", "task"]
        excl = prim.groupby(keys, sort=True)["_excluded"].sum()
        cats = prim.groupby(keys, sort=True)["category"].first()
        idx = cells.groupby(keys, sort=True).indices
        gkeys = list(excl.index)
        gcode = np.empty(len(cells), dtype=int)
        local = np.empty(len(cells), dtype=int)
        sizes = []
        for g, k in enumerate(gkeys):
            rows = idx.get(k, np.array([], dtype=int))
            gcode[rows] = g
            local[rows] = np.arange(len(rows))
            sizes.append(len(rows))
        mats = _item_matrices(items, cells, gcode, local, sizes) if items is not None else [None] * len(gkeys)
        cols = {c: cells[c].to_numpy(dtype=object) for c in ("run_id", "seed")}
        cols.update(
            {
                c: cells[c].to_numpy(dtype=float)
                for c in ("x", "u", "v", "ratio", "learning_rate", "batch_size", "value")
            }
        )
        self.tasks: dict[tuple, _Task] = {}
        for g, k in enumerate(gkeys):
            rows = idx.get(k, np.array([], dtype=int))
            self.tasks[k] = _Task(k, cols, rows, mats[g], int(excl[k]), str(cats[k]))
        self.has_items = items is not None
        self.groups: dict[tuple, list[tuple]] = {}
        for k in gkeys:
            self.groups.setdefault(k[:2], []).append(k)
        self.resampled: dict[tuple, str] = {}
        for ms, tkeys in self.groups.items():
            self._draw(ms, [self.tasks[k] for k in tkeys])

    def _draw(self, ms, tasks: list[_Task]) -> None:
        B = self.n_boot
        first: dict = {}
        for t in tasks:
            for r, sd, ratio in zip(t.run_ids, t.seeds, t.ratio):
                first.setdefault(r, (ratio, sd))
        run_ids = sorted(first, key=lambda r: (first[r][0], str(first[r][1]), str(r)))
        run_seed = np.array([first[r][1] for r in run_ids], dtype=object)
        run_ratio = np.array([first[r][0] for r in run_ids], dtype=float)
        seeds = np.array(_sorted(set(run_seed)), dtype=object)
        rng = np.random.default_rng([self.seed, _hash(ms[0]), _hash(ms[1])])
        parts = []
        if B == 0 or len(run_ids) == 0:
            run_w, parts = None, []
        elif len(seeds) >= 2:
            counts = rng.multinomial(len(seeds), np.full(len(seeds), 1 / len(seeds)), size=B)
            spos = {sd: i for i, sd in enumerate(seeds)}
            run_w = counts[:, [spos[sd] for sd in run_seed]].astype(float)
            parts = ["items", "seeds"] if self.has_items else ["seeds"]
        elif self.has_items:
            run_w, parts = np.ones((B, len(run_ids))), ["items"]
        else:
            run_w = np.zeros((B, len(run_ids)))
            strata = _codes(run_ratio)
            for s in np.unique(strata):
                cols = np.flatnonzero(strata == s)
                run_w[:, cols] = rng.multinomial(len(cols), np.full(len(cols), 1 / len(cols)), size=B)
            parts = ["runs-within-ratio"] if np.bincount(strata).max() > 1 else []
        self.resampled[ms] = "+".join(parts) if parts else "none"
        if not parts:
            return
        pos = {r: i for i, r in enumerate(run_ids)}
        for t in tasks:
            if t.n_cells == 0:
                continue
            t.W = run_w[:, [pos[r] for r in t.run_ids]]
            if t.mat is None:
                t.Y = np.broadcast_to(t.y, (B, t.n_cells))
                continue
            trng = np.random.default_rng([self.seed, _hash(t.model), _hash(t.stage), _hash(t.task)])
            n_doc = t.mat.shape[1]
            cnt = _resample_counts(trng, n_doc, B)
            valid = ~np.isnan(t.mat)
            m0 = np.where(valid, t.mat, 0.0)
            # einsum, not BLAS: these products are small, and a threaded BLAS can be 50x slower
            den = np.einsum("bd,cd->bc", cnt, valid.astype(float))
            with np.errstate(invalid="ignore", divide="ignore"):
                t.Y = np.einsum("bd,cd->bc", cnt, m0) / den
                t.Y2 = np.einsum("bd,cd->bc", cnt, m0**2) / den


# --------------------------------------------------------------------------- vectorised fits


def _resample_counts(rng, n: int, B: int) -> np.ndarray:
    """B x n counts of each index in n draws with replacement (a multinomial, fast)."""
    idx = rng.integers(0, n, size=(B, n)) + n * np.arange(B)[:, None]
    return np.bincount(idx.ravel(), minlength=B * n).reshape(B, n).astype(float)


def _wslope(x: np.ndarray, Y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Weighted OLS slope of each row of Y on x (weights W); NaN where x has no spread."""
    with np.errstate(invalid="ignore", divide="ignore"):
        sw = W.sum(1, keepdims=True)
        xm = (W * x).sum(1, keepdims=True) / sw
        ym = (W * Y).sum(1, keepdims=True) / sw
        sxx = (W * (x - xm) ** 2).sum(1)
        out = (W * (x - xm) * (Y - ym)).sum(1) / sxx
    out[~(sxx > 1e-12)] = np.nan
    return out


def _best_ratio(codes: np.ndarray, values: np.ndarray, Y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Per row, the ratio whose weighted mean score is highest (ties: the smallest ratio)."""
    onehot = (codes[:, None] == np.arange(len(values))[None, :]).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.einsum("bc,cr->br", W * Y, onehot) / np.einsum("bc,cr->br", W, onehot)
    means = np.where(np.isnan(means), -np.inf, means)
    best = values[np.argmax(means, axis=1)]
    return np.where(np.isfinite(means).any(1), best, np.nan)


def _normaliser(kind: str, Y, Y2, W) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        if kind == "none":
            return np.ones(Y.shape[0])
        sw = W.sum(1)
        if kind == "cell_sd":
            ym = (W * Y).sum(1, keepdims=True) / sw[:, None]
            return np.sqrt((W * (Y - ym) ** 2).sum(1) / sw)
        var = (Y * (1 - Y)) if Y2 is None else (Y2 - Y**2)
        return np.sqrt(np.clip((W * var).sum(1) / sw, 0, None))


def _wls2(u, v, Y, W) -> tuple[np.ndarray, np.ndarray]:
    """Weighted OLS of Y on [1, u, v] per row; returns (a, b), NaN where singular."""
    X = np.stack([np.ones_like(u), u - u.mean(), v - v.mean()], axis=1)  # C x 3
    A = np.einsum("bc,ci,cj->bij", W, X, X)
    r = np.einsum("bc,ci->bi", W * Y, X)
    ok = np.linalg.cond(A) < 1e10
    coef = np.full((len(W), 3), np.nan)
    if ok.any():
        coef[ok] = np.linalg.solve(A[ok], r[ok][..., None])[..., 0]
    return coef[:, 1], coef[:, 2]


def _rss_line(z: np.ndarray, y: np.ndarray) -> float:
    """Residual sum of squares of the OLS line y ~ c + beta * z."""
    X = np.stack([np.ones_like(z), z], axis=1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    return float(((y - X @ coef) ** 2).sum())


def _ci(draws: np.ndarray, method: str = "linear") -> tuple[float, float]:
    """95% percentile interval; NaN when fewer than half the draws are defined."""
    if draws is None or len(draws) == 0:
        return math.nan, math.nan
    d = draws[np.isfinite(draws)]
    if len(d) < max(2, len(draws) / 2):
        return math.nan, math.nan
    lo, hi = np.percentile(d, [2.5, 97.5], method=method)
    return float(lo), float(hi)


# --------------------------------------------------------------------------- public API


def _task_columns(t) -> dict:
    """The columns that name a task's row in the statistics tables."""
    return {"model": t.model, "stage": t.stage, "task": t.task, "category": t.category}


def task_slopes(
    scores: pd.DataFrame, items: pd.DataFrame | None = None, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Per model x stage x task: how the primary score moves with log10(LR/BS).

    ``slope`` is the OLS slope of cell score on log10(ratio), fitted on all kept cells (every
    batch size and seed is one point; seeds are not averaged first). Units: score per decade
    of ratio. It is the average linear trend over the batch sizes in the grid; it says
    nothing about curvature (a score that peaks mid-grid can have slope ~0).
    ``best_ratio`` is the ratio whose mean score (over batch sizes and seeds) is highest;
    ties go to the smallest ratio.

    ``slope_lo/slope_hi`` and ``best_ratio_lo/best_ratio_hi`` come from the shared bootstrap
    (items and seeds, see the module docstring): 2.5th/97.5th percentiles of the draws; for
    the best ratio, percentiles of the (discrete) best grid ratio across draws, so both ends
    are grid ratios.

    Returns one row per (model, stage, task) with columns ``model, stage, task, category,
    slope, slope_lo, slope_hi, best_ratio, best_ratio_lo, best_ratio_hi, n_cells, n_seeds``
    plus ``n_items`` (distinct doc_ids, 0 without items), ``n_excluded`` and ``resampled``.
    Groups with fewer than two distinct ratios get NaN slopes.
    """
    scored = _ScoreGroups(scores, items, n_boot, seed)
    rows = []
    for key, t in scored.tasks.items():
        row = {
            **_task_columns(t),
            **dict.fromkeys(
                ("slope", "slope_lo", "slope_hi", "best_ratio", "best_ratio_lo", "best_ratio_hi"), math.nan
            ),
            "n_cells": t.n_cells,
            "n_seeds": t.n_seeds,
            "n_items": t.n_items,
            "n_excluded": t.n_excluded,
            "resampled": scored.resampled[key[:2]],
        }
        if t.n_cells:
            values, codes = np.unique(t.ratio, return_inverse=True)
            codes = codes.reshape(-1)
            Y, _, W = t.point()
            row["slope"] = float(_wslope(t.x, Y, W)[0])
            row["best_ratio"] = float(_best_ratio(codes, values, Y, W)[0])
            if t.W is not None:
                row["slope_lo"], row["slope_hi"] = _ci(_wslope(t.x, t.Y, t.W))
                row["best_ratio_lo"], row["best_ratio_hi"] = _ci(
                    _best_ratio(codes, values, t.Y, t.W), method="inverted_cdf"
                )
        rows.append(row)
    return pd.DataFrame(rows, columns=SLOPE_COLUMNS)


def _norm_slopes(t: _Task, normaliser: str, Y, Y2, W) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        d = _normaliser(normaliser, Y, Y2, W)
        out = _wslope(t.x, Y, W) / d
    out[~(d > 1e-12)] = np.nan
    return out


def split_statistic(
    scores: pd.DataFrame,
    items: pd.DataFrame | None = None,
    n_boot: int = 1000,
    n_perm: int = 2000,
    seed: int = 0,
    normaliser: str = "item_sd",
) -> pd.DataFrame:
    """Per model x stage: do reasoning tasks respond to the ratio differently from pattern tasks?

    Each task's slope (as in :func:`task_slopes`) is divided by a scale so tasks with
    different spreads count alike (``normaliser``):

    * ``"item_sd"`` (default): the pooled within-cell standard deviation of item scores,
      sqrt(mean over cells of the variance of item scores in the cell). With items it is
      computed from them; without, from the cell scores assuming 0/1 items
      (sqrt(mean p(1-p)), exact for 0/1 items, an upper bound for fractional ones). The
      result is a slope in per-item standard deviations per decade of ratio, roughly twice
      the slope on the variance-stabilised arcsin(sqrt(p)) scale, so tasks near floor or
      ceiling are not down-weighted just for being compressed. It does not depend on the
      slope itself and stays away from 0 unless a task is at exactly 0 or 1 everywhere.
    * ``"cell_sd"``: the standard deviation of the task's cell scores (all cells). slope /
      sd = correlation(score, log ratio) / sd(log ratio): bounded, but a flat, noisy task
      gets a large random value, and batch-size effects shrink it.
    * ``"none"``: raw slopes.

    A task whose normaliser is 0 (or whose slope is undefined) is left out of the split;
    ``n_tasks`` counts the tasks used. ``split = reasoning_mean - pattern_mean`` where each
    is the mean normalised slope over that category's tasks (tasks of other categories are
    ignored). Positive: reasoning tasks favour larger LR/BS ratios more than pattern tasks.

    ``split_lo/split_hi``: 95% percentile interval from the shared bootstrap (items and seeds,
    normaliser recomputed in every draw). It treats these particular tasks as fixed: it asks
    whether *these* reasoning tasks differ from *these* pattern tasks beyond item and seed
    noise.

    ``p_value``: two-sided permutation test that shuffles the category labels over tasks
    (normalised slopes held at their estimates), i.e. the null that a task's slope is
    unrelated to its category, with tasks as the units. All distinct labelings are enumerated
    when there are at most ``n_perm`` of them (``perm_exact`` True; ``n_perm`` = their
    number; p = share of labelings with |split| >= observed, the observed one included);
    otherwise ``n_perm`` random labelings, p = (1 + count) / (1 + n_perm). ``p_min`` is the
    smallest p the design allows: with 2 + 2 tasks there are 6 labelings and p >= 2/6, so
    this test *cannot* reach 0.05 with four tasks; use the interval there, and more tasks
    for a task-level claim.

    Columns: ``model, stage, split, split_lo, split_hi, p_value, n_perm, reasoning_mean,
    pattern_mean, n_tasks`` plus ``perm_exact, p_min, normaliser, n_excluded, resampled``.
    """
    if normaliser not in NORMALISERS:
        raise ValueError(f"normaliser must be one of {NORMALISERS}, not {normaliser!r}")
    scored = _ScoreGroups(scores, items, n_boot, seed)
    rows = []
    for ms, tkeys in scored.groups.items():
        tasks = [scored.tasks[k] for k in tkeys if scored.tasks[k].category in CATEGORIES]
        row = {
            "model": ms[0],
            "stage": ms[1],
            "split": math.nan,
            "split_lo": math.nan,
            "split_hi": math.nan,
            "p_value": math.nan,
            "n_perm": 0,
            "reasoning_mean": math.nan,
            "pattern_mean": math.nan,
            "n_tasks": 0,
            "perm_exact": False,
            "p_min": math.nan,
            "normaliser": normaliser,
            "n_excluded": int(sum(scored.tasks[k].n_excluded for k in tkeys)),
            "resampled": scored.resampled[ms],
        }
        ns = np.array([_norm_slopes(t, normaliser, *t.point())[0] if t.n_cells else np.nan for t in tasks])
        use = np.isfinite(ns)
        tasks = [t for t, k in zip(tasks, use) if k]
        ns = ns[use]
        is_r = np.array([t.category == "reasoning" for t in tasks], dtype=bool)
        row["n_tasks"] = len(tasks)
        if is_r.any():
            row["reasoning_mean"] = float(ns[is_r].mean())
        if (~is_r).any():
            row["pattern_mean"] = float(ns[~is_r].mean())
        if not (is_r.any() and (~is_r).any()):
            rows.append(row)
            continue
        obs = float(ns[is_r].mean() - ns[~is_r].mean())
        row["split"] = obs
        if all(t.W is not None for t in tasks):
            draws = np.stack([_norm_slopes(t, normaliser, t.Y, t.Y2, t.W) for t in tasks], axis=1)
            row["split_lo"], row["split_hi"] = _ci(draws[:, is_r].mean(1) - draws[:, ~is_r].mean(1))
        row.update(_permutation(ns, is_r, obs, n_perm, np.random.default_rng([seed, _hash(ms[0]), _hash(ms[1]), 1])))
        rows.append(row)
    return pd.DataFrame(rows, columns=SPLIT_COLUMNS)


def _permutation(ns: np.ndarray, is_r: np.ndarray, obs: float, n_perm: int, rng) -> dict:
    T, R = len(ns), int(is_r.sum())
    n_lab = math.comb(T, R)
    tol = 1e-12 * max(1.0, abs(obs))
    if n_lab <= n_perm:
        lab = np.zeros((n_lab, T), dtype=bool)
        for i, comb in enumerate(itertools.combinations(range(T), R)):
            lab[i, list(comb)] = True
        exact = True
    else:
        lab = np.zeros((n_perm, T), dtype=bool)
        np.put_along_axis(lab, np.argsort(rng.random((n_perm, T)), axis=1)[:, :R], True, axis=1)
        exact = False
    stat = (lab * ns).sum(1) / R - (~lab * ns).sum(1) / (T - R)
    hits = int((np.abs(stat) >= abs(obs) - tol).sum())
    if exact:
        return {"p_value": hits / n_lab, "n_perm": n_lab, "perm_exact": True, "p_min": (2 if 2 * R == T else 1) / n_lab}
    return {"p_value": (1 + hits) / (1 + n_perm), "n_perm": n_perm, "perm_exact": False, "p_min": 1 / (1 + n_perm)}


def _design_check(t: _Task, require_equal_ratio_pairs: bool) -> str | None:
    """None when k is identifiable from the cells, else the plain reason it is not."""
    if t.n_cells == 0:
        return "no kept cells"
    ucode, vcode, xcode = _codes(t.lr), _codes(t.bs), _codes(t.ratio)
    if vcode.max() < 1:
        return (
            f"only one batch size ({10 ** t.v[0]:g}): log BS is constant, so its effect b and "
            "k = -b/a cannot be estimated"
        )
    if ucode.max() < 1:
        return (
            f"only one learning rate ({10 ** t.u[0]:g}): log LR is constant, so its effect a "
            "and k = -b/a cannot be estimated"
        )
    pts = np.unique(np.stack([ucode, vcode], 1), axis=0)
    up = np.array([t.u[ucode == c][0] for c in pts[:, 0]])
    vp = np.array([t.v[vcode == c][0] for c in pts[:, 1]])
    D = np.stack([up - up.mean(), vp - vp.mean()], 1)
    D = D / np.linalg.norm(D, axis=0)
    if len(pts) < 3 or np.linalg.svd(D, compute_uv=False)[-1] < 1e-6:
        return (
            "log LR and log BS are collinear across the grid (e.g. one ratio, or LR scaled "
            "with BS in lock step): their effects cannot be separated"
        )
    if require_equal_ratio_pairs:
        pairs = pd.DataFrame({"x": xcode, "u": ucode}).drop_duplicates().groupby("x").size()
        if not (pairs > 1).any():
            return (
                "no two cells share a ratio with different (LR, BS): whether the ratio alone "
                "matters would rest entirely on the linear model, not on the data"
            )
    return None


def ratio_invariance(
    scores: pd.DataFrame,
    items: pd.DataFrame | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    require_equal_ratio_pairs: bool = True,
) -> pd.DataFrame:
    """Per model x stage x task: does the score depend on LR/BS (k = 1) or on LR/sqrt(BS) (k = 0.5)?

    Fits ``score ~ c + a*log10(LR) + b*log10(BS)`` by OLS on all kept cells and reports
    ``k = -b/a``: the score is then a function of log LR - k log BS, i.e. of LR / BS**k.
    k = 1 is the "only the ratio matters" claim (SmolTulu); k = 0.5 is the square-root rule
    that SDE analyses give for Adam. ``k_lo/k_hi`` is the 95% percentile interval of -b*/a*
    over the shared bootstrap (items and seeds).

    ``rss_ratio`` / ``rss_sqrt`` are the residual sums of squares of the constrained fits
    ``score ~ c + beta*(log10 LR - k log10 BS)`` with k = 1 and k = 0.5 (``rss_free``: the
    unconstrained fit, never larger). ``verdict``: ``"ratio"`` when the interval for k covers
    1 and excludes 0.5, ``"sqrt"`` when it covers 0.5 and excludes 1, ``"undecided"`` when it
    covers both (or could not be computed), ``"neither"`` when it excludes both (e.g. k near
    0: the batch size hardly matters at fixed LR); ``reason`` spells out the interval and
    which constrained fit has the smaller RSS.

    Assumptions and limits: the score is taken as *linear* in log LR and log BS over the
    grid. A score that peaks mid-grid (common) has small a and b and a wide, meaningless k
    interval, which then shows up as "undecided". If examples seen are held fixed, a larger
    batch also means fewer optimizer steps (analysis.confounding_note says which the grid
    held fixed), and k absorbs that.

    Not estimable (NaN estimates, ``verdict = "not estimable"``, ``reason`` says why): fewer
    than two batch sizes or learning rates, log LR and log BS collinear, or (when
    ``require_equal_ratio_pairs``, the default) no ratio run at two different (LR, BS) pairs,
    because then ratio invariance is never observed directly and would rest on extrapolating
    the linear model.

    Columns: ``model, stage, task, category, a, b, k, k_lo, k_hi, rss_ratio, rss_sqrt,
    rss_free, verdict, reason, n_cells, n_batch_sizes, n_excluded, resampled``.
    """
    scored = _ScoreGroups(scores, items, n_boot, seed)
    rows = []
    for key, t in scored.tasks.items():
        row = {
            **_task_columns(t),
            **dict.fromkeys(("a", "b", "k", "k_lo", "k_hi", "rss_ratio", "rss_sqrt", "rss_free"), math.nan),
            "verdict": "not estimable",
            "reason": "",
            "n_cells": t.n_cells,
            "n_batch_sizes": len(np.unique(t.bs)),
            "n_excluded": t.n_excluded,
            "resampled": scored.resampled[key[:2]],
        }
        why = _design_check(t, require_equal_ratio_pairs)
        if why is not None:
            row["reason"] = why
            rows.append(row)
            continue
        Y, _, W = t.point()
        a, b = (float(z[0]) for z in _wls2(t.u, t.v, Y, W))
        k = -b / a if a != 0 else math.nan
        X = np.stack([np.ones_like(t.u), t.u, t.v], 1)
        coef, *_ = np.linalg.lstsq(X, t.y, rcond=None)
        row.update(
            a=a,
            b=b,
            k=k,
            rss_ratio=_rss_line(t.u - t.v, t.y),
            rss_sqrt=_rss_line(t.u - 0.5 * t.v, t.y),
            rss_free=float(((t.y - X @ coef) ** 2).sum()),
        )
        if t.W is not None:
            ab, bb = _wls2(t.u, t.v, t.Y, t.W)
            with np.errstate(invalid="ignore", divide="ignore"):
                kd = -bb / ab
            row["k_lo"], row["k_hi"] = _ci(kd)
        lo, hi = row["k_lo"], row["k_hi"]
        better = "ratio (k=1)" if row["rss_ratio"] <= row["rss_sqrt"] else "sqrt (k=0.5)"
        if not (np.isfinite(lo) and np.isfinite(hi)):
            row["verdict"] = "undecided"
            row["reason"] = f"no bootstrap interval ({row['resampled']} resampled); smaller RSS: {better}"
        else:
            r1, r5 = lo <= 1 <= hi, lo <= 0.5 <= hi
            row["verdict"] = {
                (True, True): "undecided",
                (True, False): "ratio",
                (False, True): "sqrt",
                (False, False): "neither",
            }[(r1, r5)]
            row["reason"] = f"95% interval for k [{lo:.3g}, {hi:.3g}]; smaller RSS: {better}"
        rows.append(row)
    return pd.DataFrame(rows, columns=INVARIANCE_COLUMNS)
