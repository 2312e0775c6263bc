"""Simulated LR/BS studies with planted optima, in the real tables' format (issue #15 item 7).

:func:`simulate` draws ``n_studies`` independent studies in one pair of tables, for the
planted-effect tests (``tests/test_planted.py``) and their larger benchmark
(``benchmarks/planted.py``) of :mod:`workflow_scripts.optima`.

Layout
------
Each study is its own ``stage`` (``s000``, ``s001``, ...) and each model size its own
``model`` (``m135M``, ...; ``sim`` with one size). The statistics are computed per model x
stage (bootstrap draws included, seeded by their names) and :func:`optima.size_table` fits
sizes per stage, so one call analyses every study exactly as one call per study would.

The model
---------
A grid of log10(LR/BS) ratios ``x`` (default 5 ratios, 0.5 decade apart, centred on 1e-4),
batch sizes and seeds; one trained run per (ratio, batch size, seed) and model. Task ``t`` of
a study has a planted log10 optimum

    x_t = mu_category + task_sd * z_t + alpha * (log10 N - mean log10 N over the sizes),

with ``z_t ~ N(0, 1)`` drawn once per study and task (a task keeps its offset from its
category's mean at every size). Item ``i`` of task ``t`` in run ``r`` (ratio ``x_r``) is
answered correctly with probability

    P = clip(base_t + d_i - curvature * (x_r - x_t - q_i)^2 + e_r + e_rt, 0.02, 0.98)

where ``base_t ~ U(base)`` is the task's peak score, ``d_i ~ N(0, item_sd)`` the item's
difficulty, ``q_i ~ N(0, item_peak_sd)`` where the item itself peaks, ``e_r ~ N(0, sigma_run)``
the run's training noise (shared by every task that run is scored on) and ``e_rt ~ N(0,
sigma_cell)`` the cell's own; answers are Bernoulli. Every run of a task is scored on the same
items (the same ``doc_id`` s, difficulties and peaks). Averaged over the item population the
task's curve is a parabola in ``x`` peaking at ``x_t`` exactly (the mean of ``-(x - x_t -
q)^2`` over ``q`` is ``-(x - x_t)^2 - item_peak_sd^2``); a finite item sample peaks at ``x_t +
mean(q)``, which is the item noise that the bootstrap's item resampling estimates. The clip
bends the curve's tails (where the drop from the peak exceeds ``base_t + d_i - 0.02``);
with the defaults it binds in well under 1% of answers within 0.6 decade of the peak.

Returns ``(scores, items, units, parameters)``: the tidy scores table (the columns of
``results/tables/scores.csv`` that the statistics read, ``status = "ok"``, plus the planted
optimum of the row's task and model in ``planted_log10_opt``, which the statistics ignore),
the per-item table (``run_id, task, doc_id, score``), the analysis units (one primary unit per
task) and ``{model: parameters}``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .numbers import canonical

RATIOS = tuple(canonical(10.0**x) for x in (-5.0, -4.5, -4.0, -3.5, -3.0))
SIZES = {"m135M": 135e6, "m360M": 360e6, "m1.7B": 1.7e9}


def size_label(n: float) -> str:
    """``m135M``-style model name of a parameter count."""
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"m{n / div:.3g}{unit}"
    return f"m{n:.3g}"


def simulate(
    rng: np.random.Generator | int,
    n_studies: int = 1,
    *,
    n_reasoning: int = 5,
    n_pattern: int = 5,
    reasoning_mean: float = 0.0,
    pattern_mean: float = 0.0,
    task_sd: float = 0.15,
    ratios=RATIOS,
    batch_sizes=(16, 64),
    seeds=(0, 1, 2),
    n_items: int = 100,
    base=(0.55, 0.7),
    curvature: float = 0.15,
    item_sd: float = 0.1,
    item_peak_sd: float = 0.1,
    sigma_run: float = 0.01,
    sigma_cell: float = 0.01,
    sizes: dict[str, float] | list[float] | None = None,
    alpha: float | np.ndarray = 0.0,
    items: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[dict], dict[str, float]]:
    """``n_studies`` simulated studies with planted optima (see the module docstring).

    ``reasoning_mean`` / ``pattern_mean``: each category's mean planted log10 optimum, as an
    offset from the grid's centre (log10 of the middle ratio), in decades. ``sizes``: model
    name -> parameter count (or a list of counts), for the planted ``alpha`` (default: one
    model, ``sim``, 1e8 parameters); ``alpha`` may be one value per study. ``items=False``
    skips the per-item table (returns None), for analyses that only need the cell scores."""
    rng = np.random.default_rng(rng)
    if sizes is None:
        sizes = {"sim": 1e8}
    elif not isinstance(sizes, dict):
        sizes = {size_label(n): float(n) for n in sizes}
    models = list(sizes)
    logn = np.log10([sizes[m] for m in models])
    S, M, T, N = int(n_studies), len(models), n_reasoning + n_pattern, int(n_items)
    cats = np.array(["reasoning"] * n_reasoning + ["pattern"] * n_pattern)
    tasks = [f"r{i}" for i in range(n_reasoning)] + [f"p{i}" for i in range(n_pattern)]

    cells = [(r, b, s) for r in ratios for b in batch_sizes for s in seeds]
    C = len(cells)
    ratio = np.array([canonical(c[0]) for c in cells])
    bs = np.array([float(c[1]) for c in cells])
    seed = np.array([c[2] for c in cells])
    lr = np.array([canonical(r * b) for r, b in zip(ratio, bs)])
    xr = np.log10(ratio)
    centre = np.log10(np.unique(ratio))[len(np.unique(ratio)) // 2]

    # planted optima: studies x sizes x tasks
    mu = np.where(cats == "reasoning", reasoning_mean, pattern_mean) + centre
    xt = mu[None, :] + task_sd * rng.standard_normal((S, T))
    alpha = np.broadcast_to(np.asarray(alpha, dtype=float), (S,))
    x_opt = xt[:, None, :] + alpha[:, None, None] * (logn - logn.mean())[None, :, None]

    base_t = rng.uniform(base[0], base[1], (S, T))
    d = item_sd * rng.standard_normal((S, T, N)).astype(np.float32)
    q = item_peak_sd * rng.standard_normal((S, T, N)).astype(np.float32)
    e_run = sigma_run * rng.standard_normal((S, M, C))
    e_cell = sigma_cell * rng.standard_normal((S, M, T, C))

    # answers: studies x sizes x tasks x cells x items, one study at a time (memory)
    value = np.empty((S, M, T, C))
    answers = np.empty((S, M, T, C, N), dtype=np.float32) if items else None
    for s in range(S):
        shift = (base_t[s][None, :, None] + e_run[s][:, None, :] + e_cell[s]).astype(np.float32)  # M x T x C
        dist = (xr[None, None, :] - x_opt[s][:, :, None]).astype(np.float32)  # M x T x C
        P = (
            shift[..., None]
            + d[s][None, :, None, :]
            - np.float32(curvature) * (dist[..., None] - q[s][None, :, None, :]) ** 2
        )
        np.clip(P, 0.02, 0.98, out=P)
        A = rng.random(P.shape, dtype=np.float32) < P
        value[s] = A.mean(-1, dtype=np.float64)
        if items:
            answers[s] = A

    stages = np.array([f"s{j:03d}" for j in range(S)])
    # rows in (study, size, task, cell) order
    st = np.repeat(stages, M * T * C)
    mo = np.tile(np.repeat(np.array(models), T * C), S)
    cell_idx = np.tile(np.arange(C), S * M * T)
    run_id = pd.Series(mo, dtype=object) + "/" + st + "/c" + pd.Series(cell_idx).astype(str).str.zfill(3)
    run_id = run_id.to_numpy(dtype=object)
    task_col = np.tile(np.repeat(np.array(tasks), C), S * M)
    scores = pd.DataFrame(
        {
            "model": mo,
            "stage": st,
            "run_id": run_id,
            "learning_rate": lr[cell_idx],
            "batch_size": bs[cell_idx],
            "ratio": ratio[cell_idx],
            "seed": seed[cell_idx],
            "task": task_col,
            "category": np.tile(np.repeat(cats, C), S * M),
            "metric": "acc,none",
            "metric_name": "acc",
            "primary": True,
            "value": value.reshape(-1),
            "n_samples": N,
            "status": "ok",
            "planted_log10_opt": np.repeat(x_opt.reshape(-1), C),
        }
    )
    item_table = None
    if items:
        item_table = pd.DataFrame(
            {
                "run_id": np.repeat(run_id, N),
                "task": np.repeat(task_col, N),
                "doc_id": np.tile(np.arange(N), S * M * T * C),
                "score": answers.reshape(-1),
            }
        )
    units = [{"unit": t, "tasks": [t], "category": str(c), "role": "primary"} for t, c in zip(tasks, cats, strict=True)]
    return scores, item_table, units, {m: float(sizes[m]) for m in models}


def planted(scores: pd.DataFrame) -> pd.DataFrame:
    """The planted log10 optimum per model x stage x task (columns model, stage, task,
    category, planted_log10_opt)."""
    cols = ["model", "stage", "task", "category", "planted_log10_opt"]
    return scores[cols].drop_duplicates(["model", "stage", "task"]).reset_index(drop=True)


def planted_diff(scores: pd.DataFrame) -> pd.Series:
    """Per (model, stage): the planted "these tasks" difference, the mean planted log10
    optimum of the study's reasoning tasks minus that of its pattern tasks."""
    p = planted(scores)
    m = p.groupby(["model", "stage", "category"])["planted_log10_opt"].mean().unstack("category")
    return (m["reasoning"] - m["pattern"]).rename("planted_diff")
