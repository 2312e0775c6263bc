"""Planted-effect benchmark of the optima statistics (issue #15 item 7): tests/test_planted.py's
properties at a larger scale, with a CSV of the measured rates and a figure.

    python benchmarks/planted.py                      # 500 studies per property, n_boot 500
    python benchmarks/planted.py --studies 200 --n-boot 200 --out /tmp/planted

Simulated studies (workflow_scripts.simulate: 5 ratios 0.5 decade apart, 2 batch sizes x 3
seeds, 100 Bernoulli items per task, 5 reasoning + 5 pattern tasks, between-task sd 0.15
decade unless stated) analysed by optima.optima_tables (mixed=False) and sizes.size_table:

* coverage of the 95% bootstrap interval of ``diff`` for the planted difference of THESE
  tasks (reasoning optima 0.5 decade above pattern), and of the units' optimum intervals, in
  two noise regimes: answers' Bernoulli noise dominating (training noise sd 0.01 per run and
  per cell) and training noise dominating (0.04 per run, 0.03 per cell);
* the false category-claim rate (permutation p <= 0.05, 5 + 5 tasks) with equal category
  means (4x the studies: cell scores only, no bootstrap needed), and how often the "these
  tasks" interval excludes 0 in the same situation (it should, often: these tasks differ);
* power of the category claim against the planted difference of category means, for
  between-task sds 0.15 and 0.3 (cell scores only);
* alpha recovery across 3 sizes (135M, 360M, 1.7B; 3 + 3 tasks, 1 batch size x 3 seeds),
  each study with its own planted alpha drawn uniformly from [-0.6, 0.6].

Writes ``planted.csv`` (one row per measured quantity: ``n``, the studies or intervals it is
over, the estimate and a 95% interval, Wilson's for rates) and ``planted.pdf`` /
``planted.png`` under ``--out``. The committed ones (benchmarks/planted/) are the defaults'
run, 277 s on one core of the project's 2-core machine: diff coverage 1.000 (items dominate)
and 0.970 (training dominates), false category claims 4.55% of 2,000 (exact size 4.76%),
power 0.938 at 0.5 decade (task sd 0.15), alpha interval coverage 0.999, estimated alpha
about 1.05x the planted one (optima near the grid's edge err outward).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from workflow_scripts.optima import optima_tables  # noqa: E402
from workflow_scripts.simulate import SIZES, planted, planted_diff, simulate  # noqa: E402
from workflow_scripts.sizes import size_table  # noqa: E402

EFFECT = 0.5  # decades, reasoning above pattern
REGIMES = {
    "items dominate": dict(sigma_run=0.01, sigma_cell=0.01),
    "training dominates": dict(sigma_run=0.04, sigma_cell=0.03),
}
EFFECTS = (0.0, 0.125, 0.25, 0.375, 0.5, 0.75)
TASK_SDS = (0.15, 0.3)
CHUNK = 100  # studies per analysis call (memory); each chunk its own bootstrap seed
T0 = time.time()


def log(msg: str) -> None:
    print(f"[planted {time.time() - T0:6.1f} s] {msg}", flush=True)


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    z, p = 1.959964, k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return c - h, c + h


def rate_row(prop: str, setting: str, hits: pd.Series) -> dict:
    k, n = int(hits.sum()), len(hits)
    lo, hi = wilson(k, n)
    return {"property": prop, "setting": setting, "n": n, "estimate": k / n, "ci_lo": lo, "ci_hi": hi}


def chunks(n: int):
    for i, start in enumerate(range(0, n, CHUNK)):
        yield i, min(CHUNK, n - start)


def analyse(seed: int, n: int, n_boot: int, items: bool = True, **kw):
    """(comparisons with the planted diff, optima with the planted optimum), all chunks."""
    cmps, opts = [], []
    for i, m in chunks(n):
        scores, its, units, _ = simulate([seed, i], m, items=items, **kw)
        optima, cmp, _ = optima_tables(scores, its, units, n_boot=n_boot if items else 0, seed=i, mixed=False)
        truth = planted(scores).rename(columns={"task": "unit"})[["model", "stage", "unit", "planted_log10_opt"]]
        optima = optima.merge(truth, on=["model", "stage", "unit"]).assign(chunk=i)
        cmps.append(cmp.merge(planted_diff(scores).reset_index(), on=["model", "stage"]).assign(chunk=i))
        opts.append(optima)
    return pd.concat(cmps, ignore_index=True), pd.concat(opts, ignore_index=True)


def coverage(n: int, n_boot: int, rows: list, seed: int) -> dict:
    out = {}
    for r, (regime, noise) in enumerate(REGIMES.items()):
        cmp, optima = analyse(seed + r, n, n_boot, reasoning_mean=EFFECT / 2, pattern_mean=-EFFECT / 2, **noise)
        cmp = cmp[cmp["set"] == "primary"]
        err = cmp["diff"] - cmp["planted_diff"]
        cov = (cmp["diff_lo"] <= cmp["planted_diff"]) & (cmp["planted_diff"] <= cmp["diff_hi"])
        t = optima["planted_log10_opt"]
        ucov = (optima["log10_opt_lo"] <= t) & (t <= optima["log10_opt_hi"])
        ratio = float(((cmp["diff_hi"] - cmp["diff_lo"]) / 3.92).mean() / err.std())
        rows.append(rate_row("diff interval coverage", regime, cov))
        rows.append(rate_row("unit optimum interval coverage", regime, ucov))
        rows.append(
            {"property": "bootstrap sd / error sd of diff", "setting": regime, "n": len(cmp), "estimate": ratio}
        )
        se = float(err.std() / math.sqrt(len(err)))
        rows.append(
            {
                "property": "diff mean error (decades)",
                "setting": regime,
                "n": len(cmp),
                "estimate": float(err.mean()),
                "ci_lo": float(err.mean()) - 1.96 * se,
                "ci_hi": float(err.mean()) + 1.96 * se,
            }
        )
        rows.append(rate_row("power, category claim (p <= 0.05)", f"{regime}; effect {EFFECT}", cmp["p_value"] <= 0.05))
        rows.append(
            rate_row("these-tasks claim (diff interval excludes 0)", f"{regime}; effect {EFFECT}", cmp["diff_lo"] > 0)
        )
        out[regime] = (cov.mean(), ucov.mean(), ratio)
        log(f"coverage, {regime}: diff {cov.mean():.3f}, units {ucov.mean():.3f}, sd ratio {ratio:.2f}")
    return out


def null(n: int, n_boot: int, rows: list, seed: int) -> tuple[float, np.ndarray]:
    cmp, _ = analyse(seed, 4 * n, 0, items=False, reasoning_mean=0.0, pattern_mean=0.0)
    p = cmp.loc[cmp["set"] == "primary", "p_value"].to_numpy()
    rows.append(rate_row("false category claim (p <= 0.05)", "equal category means", pd.Series(p <= 0.05)))
    rows.append(rate_row("p <= 0.25 (exact 62/252 = 0.246)", "equal category means", pd.Series(p <= 0.25)))
    log(f"null: false category-claim rate {np.mean(p <= 0.05):.4f} over {len(p)} studies (exact size 12/252)")
    cmp, _ = analyse(seed + 1, n, n_boot, reasoning_mean=0.0, pattern_mean=0.0)
    cmp = cmp[cmp["set"] == "primary"]
    excl = (cmp["diff_lo"] > 0) | (cmp["diff_hi"] < 0)
    cov = (cmp["diff_lo"] <= cmp["planted_diff"]) & (cmp["planted_diff"] <= cmp["diff_hi"])
    rows.append(rate_row("these-tasks interval excludes 0", "equal category means", excl))
    rows.append(rate_row("diff interval coverage", "equal category means", cov))
    log(f"null: the these-tasks interval excludes 0 in {excl.mean():.3f}, covers these tasks' diff in {cov.mean():.3f}")
    return float(np.mean(p <= 0.05)), p


def power(n: int, rows: list, seed: int) -> pd.DataFrame:
    curve = []
    for s, sd in enumerate(TASK_SDS):
        for e, effect in enumerate(EFFECTS):
            cmp, _ = analyse(
                seed + 10 * s + e, n, 0, items=False, reasoning_mean=effect / 2, pattern_mean=-effect / 2, task_sd=sd
            )
            hits = cmp.loc[cmp["set"] == "primary", "p_value"] <= 0.05
            rows.append(rate_row("power, category claim (p <= 0.05)", f"effect {effect}; task sd {sd}", hits))
            lo, hi = wilson(int(hits.sum()), len(hits))
            curve.append({"task_sd": sd, "effect": effect, "power": hits.mean(), "lo": lo, "hi": hi})
            log(f"power: effect {effect:.3f} decade, task sd {sd}: {hits.mean():.3f}")
    return pd.DataFrame(curve)


def alpha(n: int, n_boot: int, rows: list, seed: int) -> pd.DataFrame:
    planted_alpha = np.random.default_rng([seed, 99]).uniform(-0.6, 0.6, n)
    fits = []
    for i, m in chunks(n):
        a = planted_alpha[i * CHUNK : i * CHUNK + m]
        scores, items, units, params = simulate(
            [seed, i],
            m,
            n_reasoning=3,
            n_pattern=3,
            reasoning_mean=0.1,
            pattern_mean=-0.1,
            sizes=SIZES,
            alpha=a,
            batch_sizes=(32,),
        )
        optima, _, draws = optima_tables(scores, items, units, n_boot=n_boot, seed=i, mixed=False)
        sizes = size_table(optima, draws, params)
        cat = sizes[sizes["level"] == "category"].drop_duplicates(["stage", "category"]).copy()
        cat["planted_alpha"] = a[cat["stage"].str[1:].astype(int).to_numpy()]
        fits.append(cat[["stage", "category", "alpha", "alpha_lo", "alpha_hi", "planted_alpha"]])
        log(f"alpha: {i * CHUNK + m} / {n} studies")
    fits = pd.concat(fits, ignore_index=True)
    cov = (fits["alpha_lo"] <= fits["planted_alpha"]) & (fits["planted_alpha"] <= fits["alpha_hi"])
    rows.append(rate_row("alpha interval coverage (category)", "3 sizes; alpha ~ U(-0.6, 0.6)", cov))
    err = fits["alpha"] - fits["planted_alpha"]
    slope = float(np.polyfit(fits["planted_alpha"], fits["alpha"], 1)[0])
    se = float(err.std() / math.sqrt(len(err) / 2))  # two categories per study share its noise in part
    rows.append(
        {
            "property": "alpha mean error",
            "setting": "3 sizes; alpha ~ U(-0.6, 0.6)",
            "n": n,
            "estimate": float(err.mean()),
            "ci_lo": float(err.mean()) - 1.96 * se,
            "ci_hi": float(err.mean()) + 1.96 * se,
        }
    )
    rows.append({"property": "slope of estimated on planted alpha", "setting": "3 sizes", "n": n, "estimate": slope})
    log(f"alpha: coverage {cov.mean():.3f}, mean error {err.mean():+.4f}, slope of estimated on planted {slope:.3f}")
    return fits


def figure(cov: dict, null_rate: float, p: np.ndarray, curve: pd.DataFrame, fits: pd.DataFrame, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(10, 8))
    a = ax[0, 0]
    labels, vals = [], []
    for regime, (d, u, _) in cov.items():
        labels += [f"diff\n{regime.replace(' ', chr(10))}", f"units\n{regime.replace(' ', chr(10))}"]
        vals += [d, u]
    a.bar(range(len(vals)), vals, color=["C0", "C1"] * len(cov))
    a.axhline(0.95, color="k", ls="--", lw=1, label="nominal 0.95")
    a.set_xticks(range(len(vals)), labels, fontsize=7)
    a.set_ylim(min(0.8, min(vals) - 0.05), 1.0)
    a.set_ylabel("coverage of the 95% interval")
    a.set_title("Interval coverage (these tasks' planted optima)")
    a.legend(loc="lower right", fontsize=8)
    a = ax[0, 1]
    levels = np.unique(np.round(p, 10))
    a.step(levels, [np.mean(p <= v + 1e-12) for v in levels], where="post", label="observed P(p <= x)")
    a.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":", label="uniform")
    a.axvline(0.05, color="C3", lw=1, ls="--")
    a.set_xlim(0, 0.3)
    a.set_ylim(0, 0.3)
    a.set_xlabel("permutation p")
    a.set_ylabel("share of null studies")
    a.set_title(f"Equal category means: p <= 0.05 in {null_rate:.3f}\n(exact size 12/252 = 0.048)")
    a.legend(fontsize=8)
    a = ax[1, 0]
    for sd, g in curve.groupby("task_sd"):
        yerr = [g["power"] - g["lo"], g["hi"] - g["power"]]
        a.errorbar(g["effect"], g["power"], yerr=yerr, marker="o", capsize=3, label=f"between-task sd {sd}")
    a.axhline(0.05, color="k", lw=0.8, ls=":")
    a.set_xlabel("planted reasoning - pattern mean log10 optimum (decades)")
    a.set_ylabel("P(permutation p <= 0.05)")
    a.set_title("Power of the category claim, 5 + 5 tasks")
    a.legend(fontsize=8)
    a = ax[1, 1]
    for cat, g in fits.groupby("category"):
        a.scatter(g["planted_alpha"], g["alpha"], s=6, alpha=0.5, label=cat)
    lim = [-0.8, 0.8]
    a.plot(lim, lim, color="k", lw=0.8)
    covered = ((fits["alpha_lo"] <= fits["planted_alpha"]) & (fits["planted_alpha"] <= fits["alpha_hi"])).mean()
    a.set_xlabel("planted alpha")
    a.set_ylabel("estimated alpha (size_table)")
    a.set_title(f"Alpha across 3 sizes: interval coverage {covered:.3f}")
    a.legend(fontsize=8)
    fig.tight_layout()
    for ext in ("pdf", "png"):
        fig.savefig(out / f"planted.{ext}", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=500, help="simulated studies per property (default 500)")
    ap.add_argument("--n-boot", type=int, default=500, help="bootstrap draws (default 500)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "planted")
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    n, b, rows = args.studies, args.n_boot, []
    log(f"{n} studies per property, n_boot {b}, writing to {args.out}")
    cov = coverage(n, b, rows, args.seed)
    null_rate, p = null(n, b, rows, args.seed + 100)
    curve = power(n, rows, args.seed + 200)
    fits = alpha(n, b, rows, args.seed + 300)
    table = pd.DataFrame(rows, columns=["property", "setting", "n", "estimate", "ci_lo", "ci_hi"])
    table.to_csv(args.out / "planted.csv", index=False, float_format="%.4f")
    figure(cov, null_rate, p, curve, fits, args.out)
    log(f"wrote {args.out / 'planted.csv'}, planted.pdf, planted.png")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
