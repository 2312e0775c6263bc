"""Tests of workflow_scripts.stats: planted effects in simulated studies, design checks, exclusions
(and of prose.confounding_note, the prose on what the simulated grids held fixed).

Many simulated studies are analysed in one call by giving each study its own ``model`` name;
the statistics are computed per model x stage, so this is the same as one call per study.
Every simulation is seeded, so the tests are deterministic; the tolerances below say how far
a *correct* method may land from nominal given the number of simulated studies.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workflow_scripts import stats
from workflow_scripts.prose import confounding_note

REPO = Path(__file__).resolve().parent.parent
REAL_SCORES = REPO / "results" / "tables" / "scores.csv"
RATIOS = 10.0 ** np.array([-5.0, -4.5, -4.0, -3.5, -3.0])


def simulate(
    rng,
    n_studies,
    slopes,
    categories,
    *,
    ratios=RATIOS,
    batch_sizes=(8, 32),
    seeds=(0, 1),
    n_items=150,
    sigma_run=0.02,
    item_slope_sd=0.03,
    k=1.0,
    prefix="sim",
):
    """Simulated scores table and per-item table.

    Per task, item i has a base success probability p_i ~ U(0.3, 0.7) (difficulty) and its own
    slope deviation d_i ~ N(0, item_slope_sd); run r adds training noise e_r ~ N(0, sigma_run)
    (independent per run and task). With z = log10(LR) - k log10(BS), centred over the grid,

        P(item i correct in run r) = p_i + (slope_t + d_i) * z_r + e_r,

    and answers are Bernoulli. In the settings used here P stays inside (0, 1) (the clip never
    binds in 10^6 simulated draws), so the population slope of the
    score on z is exactly slope_t; with k = 1, z is log10(LR/BS) and slope_t is the estimand of
    task_slopes.
    """
    cells = [(r, b, s) for r in ratios for b in batch_sizes for s in seeds]
    ratio = np.array([c[0] for c in cells])
    bs = np.array([c[1] for c in cells])
    seed = np.array([c[2] for c in cells])
    lr = ratio * bs
    z = np.log10(lr) - k * np.log10(bs)
    z = z - z.mean()
    S, C, N = n_studies, len(cells), n_items
    models = np.array([f"{prefix}{j:03d}" for j in range(S)])
    run_ids = np.char.add(np.repeat(models, C), np.tile(np.array([f"/sft/c{c:02d}" for c in range(C)]), S))
    score_frames, item_frames = [], []
    for t, (beta, cat) in enumerate(zip(slopes, categories)):
        p = rng.uniform(0.3, 0.7, (S, 1, N))
        d = rng.normal(0.0, item_slope_sd, (S, 1, N))
        e = rng.normal(0.0, sigma_run, (S, C, 1))
        P = np.clip(p + (beta + d) * z[None, :, None] + e, 0, 1)
        M = (rng.random(P.shape) < P).astype(float)  # studies x cells x items
        task = f"t{t}"
        score_frames.append(
            pd.DataFrame(
                {
                    "model": np.repeat(models, C),
                    "stage": "sft",
                    "run_id": run_ids,
                    "learning_rate": np.tile(lr, S),
                    "batch_size": np.tile(bs, S),
                    "ratio": np.tile(ratio, S),
                    "seed": np.tile(seed, S),
                    "optimizer_steps": np.tile(16000 // bs, S),
                    "examples_seen": 16000,
                    "task": task,
                    "category": cat,
                    "metric": "acc,none",
                    "metric_name": "acc",
                    "primary": True,
                    "value": M.mean(2).ravel(),
                    "stderr": np.nan,
                    "n_samples": N,
                }
            )
        )
        item_frames.append(
            pd.DataFrame(
                {
                    "run_id": np.repeat(run_ids, N),
                    "task": task,
                    "doc_id": np.tile(np.arange(N), S * C),
                    "score": M.ravel(),
                }
            )
        )
    return pd.concat(score_frames, ignore_index=True), pd.concat(item_frames, ignore_index=True)


# ------------------------------------------------------------------ planted effects: slopes and split

PLANTED = dict(slopes=(0.08, 0.04, -0.04, -0.08), categories=("reasoning", "reasoning", "pattern", "pattern"))
NULL = dict(slopes=(0.05, 0.05, 0.05, 0.05), categories=("reasoning", "reasoning", "pattern", "pattern"))
N_STUDIES = 200
N_BOOT = 200


@pytest.fixture(scope="module")
def planted():
    scores, items = simulate(np.random.default_rng(2024), N_STUDIES, **PLANTED)
    return scores, items


@pytest.fixture(scope="module")
def null_study():
    scores, items = simulate(np.random.default_rng(7), N_STUDIES, **NULL)
    return scores, items


def test_slope_interval_coverage(planted):
    """95% intervals for the planted per-task slopes cover them at close to the nominal rate.

    800 intervals (200 studies x 4 tasks): binomial noise alone is +-0.8 points (1 sd) around
    the true coverage. The items x seeds bootstrap is known to be somewhat conservative when
    per-answer noise dominates (module docstring) and anti-conservative for training noise
    with 2 seeds; in this setting (150 items, run noise sd 0.02) it should land within
    [0.90, 0.99]: below 0.90 would mean intervals too narrow to trust, above 0.99 grossly wide.
    """
    scores, items = planted
    res = stats.task_slopes(scores, items, n_boot=N_BOOT, seed=1)
    assert len(res) == 4 * N_STUDIES
    assert (res["resampled"] == "items+seeds").all()
    assert res[["n_cells", "n_seeds", "n_items", "n_excluded"]].iloc[0].tolist() == [20, 2, 150, 0]
    truth = res["task"].map({f"t{i}": b for i, b in enumerate(PLANTED["slopes"])})
    covered = (res["slope_lo"] <= truth) & (truth <= res["slope_hi"])
    coverage = covered.mean()
    print(f"slope CI coverage {coverage:.3f}")
    assert 0.90 <= coverage <= 0.99
    # the estimates are unbiased: mean error well within 3 standard errors
    err = res["slope"] - truth
    assert abs(err.mean()) < 3 * err.std() / math.sqrt(len(err))
    # the best ratio (largest for increasing tasks, smallest for decreasing) lies in its interval
    assert (res["best_ratio_lo"] <= res["best_ratio"]).all() and (res["best_ratio"] <= res["best_ratio_hi"]).all()
    inc = res[res["task"] == "t0"]
    assert (inc["best_ratio"] == RATIOS[-1]).mean() > 0.9


def test_planted_split_sign_recovered(planted):
    """With reasoning slopes > 0 > pattern slopes the split is positive in nearly every study."""
    scores, items = planted
    res = stats.split_statistic(scores, items, n_boot=N_BOOT, seed=1)
    assert len(res) == N_STUDIES
    assert (res["n_tasks"] == 4).all()
    assert (res["split"] > 0).mean() >= 0.98
    assert (res["split_lo"] > 0).mean() >= 0.9  # and the interval says so
    # four tasks: 6 labelings, exact, and p can never go below 2/6
    assert (res["n_perm"] == 6).all() and res["perm_exact"].all()
    assert np.allclose(res["p_min"], 2 / 6) and (res["p_value"] >= 2 / 6 - 1e-12).all()
    # the observed labeling separates the tasks perfectly, so it is (with its mirror) the most extreme
    assert (res["p_value"] <= 2 / 6 + 1e-12).mean() >= 0.95


def test_no_split_false_positive_rate(null_study):
    """Identical tasks in both categories: the interval excludes 0 at about the nominal 5%.

    200 studies: binomial sd of a 5% rate is 1.5 points. The tolerance, at most 10%, is 5%
    plus about 3 sd; a conservative bootstrap may well give fewer, which is acceptable for a
    test that makes claims.
    """
    scores, items = null_study
    res = stats.split_statistic(scores, items, n_boot=N_BOOT, seed=1)
    claims = ((res["split_lo"] > 0) | (res["split_hi"] < 0)).mean()
    print(f"bootstrap split false-positive rate {claims:.3f}")
    assert claims <= 0.10
    # the split is centred on 0 (no bias between categories)
    assert abs(res["split"].mean()) < 3 * res["split"].std() / math.sqrt(len(res))


def test_permutation_false_positive_rate():
    """8 exchangeable tasks (4 + 4, 70 labelings): p <= 0.05 in about 2/70 = 2.9% of studies.

    The exact test's size at 0.05 is 2/70 (two-sided, smallest p): 0.05 itself is not
    attainable. With 400 studies the binomial sd of that rate is 0.8 points, so we accept at
    most 6% (size + 3.5 sd). Cell-level data only (items=None), no bootstrap, so it is cheap.
    """
    cats = ("reasoning",) * 4 + ("pattern",) * 4
    scores, _ = simulate(
        np.random.default_rng(11), 2 * N_STUDIES, slopes=(0.03,) * 8, categories=cats, n_items=100, seeds=(0,)
    )
    res = stats.split_statistic(scores, None, n_boot=0, seed=3)
    assert (res["n_perm"] == 70).all() and res["perm_exact"].all()
    assert np.allclose(res["p_min"], 2 / 70)
    assert res["split_lo"].isna().all() and (res["resampled"] == "none").all()
    fpr = (res["p_value"] <= 0.05).mean()
    print(f"permutation false-positive rate {fpr:.3f}")
    assert fpr <= 0.06
    # exact permutation p-values are uniform on their grid: about 20% of them are <= 0.2
    assert 0.14 <= (res["p_value"] <= 0.2).mean() <= 0.26
    # and with a planted split the permutation test does find it with 8 tasks
    scores, _ = simulate(
        np.random.default_rng(12), 40, slopes=(0.06,) * 4 + (-0.06,) * 4, categories=cats, n_items=100, seeds=(0,)
    )
    res = stats.split_statistic(scores, None, n_boot=0, seed=3)
    assert (res["p_value"] <= 0.05).mean() >= 0.9


def test_random_permutations_when_many_labelings():
    cats = ("reasoning",) * 7 + ("pattern",) * 7  # C(14, 7) = 3432 labelings > n_perm
    scores, _ = simulate(
        np.random.default_rng(5), 1, slopes=(0.05,) * 7 + (-0.05,) * 7, categories=cats, n_items=60, seeds=(0,)
    )
    res = stats.split_statistic(scores, None, n_boot=0, n_perm=500, seed=0)
    assert not res["perm_exact"][0] and res["n_perm"][0] == 500
    # p = (1 + hits) / 501 with a strongly separated split: small, never 0
    assert 1 / 501 <= res["p_value"][0] <= 0.02
    again = stats.split_statistic(scores, None, n_boot=0, n_perm=500, seed=0)
    pd.testing.assert_frame_equal(res, again)


def test_deterministic_and_order_free(planted):
    scores, items = planted
    sub = scores[scores["model"].isin(["sim000", "sim001"])]
    its = items[items["run_id"].str.startswith(("sim000/", "sim001/"))]
    a = stats.task_slopes(sub, its, n_boot=50, seed=9)
    b = stats.task_slopes(sub.sample(frac=1, random_state=0), its.sample(frac=1, random_state=0), n_boot=50, seed=9)
    pd.testing.assert_frame_equal(a, b)
    c = stats.task_slopes(sub[sub["model"] == "sim000"], its, n_boot=50, seed=9)
    pd.testing.assert_frame_equal(a[a["model"] == "sim000"].reset_index(drop=True), c)


def test_without_items_resamples_seeds(planted):
    scores, _ = planted
    sub = scores[scores["model"] == "sim000"]
    res = stats.task_slopes(sub, None, n_boot=100, seed=0)
    assert (res["resampled"] == "seeds").all() and (res["n_items"] == 0).all()
    assert (res["slope_lo"] <= res["slope"]).all() and (res["slope"] <= res["slope_hi"]).all()
    one_seed = sub[sub["seed"] == 0]
    res = stats.task_slopes(one_seed, None, n_boot=100, seed=0)
    assert (res["resampled"] == "runs-within-ratio").all()
    assert res["slope_lo"].notna().all()
    # with items the point estimate is the same (item means equal the values)
    _, items = planted
    with_items = stats.task_slopes(sub, items[items["run_id"].str.startswith("sim000/")], n_boot=0)
    assert np.allclose(with_items["slope"], stats.task_slopes(sub, None, n_boot=0)["slope"])


# ------------------------------------------------------------------ ratio invariance

INV = dict(
    slopes=(0.1, -0.1),
    categories=("reasoning", "pattern"),
    batch_sizes=(8, 32, 128),
    seeds=(0, 1),
    n_items=200,
    sigma_run=0.01,
)


@pytest.mark.parametrize("k, expected", [(1.0, "ratio"), (0.5, "sqrt")])
def test_ratio_invariance_verdicts(k, expected):
    """Data made with k = 1 (or 0.5) get the matching verdict in most studies, the other rarely.

    40 studies x 2 tasks, 5 ratios x batch sizes 8/32/128 x 2 seeds, 200 items. The rest of
    the verdicts should be "undecided" (the interval for k covers both values). A wrong
    verdict needs the interval to miss the truth on the side of the other value: about 2.5%
    if coverage is nominal; with 80 fits (binomial sd about 2 points) we accept up to 8%.
    """
    scores, items = simulate(np.random.default_rng(int(k * 100)), 40, k=k, **INV)
    res = stats.ratio_invariance(scores, items, n_boot=N_BOOT, seed=2)
    share = res["verdict"].value_counts(normalize=True)
    print(f"k={k}: {share.to_dict()}")
    assert share.get(expected, 0) >= 0.7
    other = "sqrt" if expected == "ratio" else "ratio"
    assert share.get(other, 0) <= 0.08
    cover = ((res["k_lo"] <= k) & (k <= res["k_hi"])).mean()
    print(f"k={k}: interval coverage {cover:.3f}")
    assert cover >= 0.88
    assert (res["rss_free"] <= res[["rss_ratio", "rss_sqrt"]].min(axis=1) + 1e-12).all()
    better = np.where(res["rss_ratio"] < res["rss_sqrt"], "ratio", "sqrt")
    assert (better == expected).mean() >= 0.8
    # a and b are the plain OLS coefficients on log10 LR and log10 BS
    g = scores[(scores["model"] == "sim000") & (scores["task"] == "t0")]
    X = np.column_stack([np.ones(len(g)), np.log10(g["learning_rate"]), np.log10(g["batch_size"])])
    coef = np.linalg.lstsq(X, g["value"].to_numpy(), rcond=None)[0]
    first = res[(res["model"] == "sim000") & (res["task"] == "t0")].iloc[0]
    assert (first["a"], first["b"], first["k"]) == pytest.approx((coef[1], coef[2], -coef[2] / coef[1]))


def test_ratio_invariance_not_estimable_designs():
    rng = np.random.default_rng(3)
    # ratios x one batch size
    scores, items = simulate(rng, 1, slopes=(0.1,), categories=("reasoning",), batch_sizes=(16,), n_items=50)
    res = stats.ratio_invariance(scores, items, n_boot=20)
    assert res["verdict"][0] == "not estimable" and "one batch size" in res["reason"][0]
    assert np.isnan(res[["a", "b", "k", "k_lo", "k_hi"]].to_numpy(float)).all()
    # one ratio, LR scaled with BS: collinear
    scores, _ = simulate(
        rng, 1, slopes=(0.1,), categories=("reasoning",), ratios=[1e-4], batch_sizes=(8, 16, 32), n_items=50
    )
    res = stats.ratio_invariance(scores, None, n_boot=20)
    assert res["verdict"][0] == "not estimable" and "collinear" in res["reason"][0]
    # LR grid x BS grid with no shared ratio: refused by default, estimable when asked
    scores, _ = simulate(
        rng, 1, slopes=(0.1,), categories=("reasoning",), ratios=[1e-5, 3e-5, 1e-4], batch_sizes=(8, 20), n_items=50
    )
    scores["learning_rate"] = scores["learning_rate"] * np.where(scores["batch_size"] == 20, 1.1, 1.0)
    scores["ratio"] = scores["learning_rate"] / scores["batch_size"]
    res = stats.ratio_invariance(scores, None, n_boot=20)
    assert res["verdict"][0] == "not estimable" and "share a ratio" in res["reason"][0]
    res = stats.ratio_invariance(scores, None, n_boot=20, require_equal_ratio_pairs=False)
    assert res["verdict"][0] != "not estimable" and np.isfinite(res["k"][0])


# ------------------------------------------------------------------ exact grid values


def _grid_scores(lrs, batch_sizes, value):
    rows = [
        {
            "model": "m",
            "stage": "sft",
            "run_id": f"m/sft/lr{lr}_bs{bs}_s{seed}",
            "learning_rate": lr,
            "batch_size": bs,
            "seed": seed,
            "task": "t",
            "category": "reasoning",
            "primary": True,
            "value": value(lr, bs, seed),
        }
        for lr in lrs
        for bs in batch_sizes
        for seed in (0, 1)
    ]
    return pd.DataFrame(rows)


def test_grid_values_group_exactly_with_no_tolerance():
    """Two ratios 1e-5 apart (relative) are two grid values, however close: the tables keep
    every float, so no rounding has to be undone by a tolerance."""
    close = 1.00001e-4
    scores = _grid_scores(
        [1e-4 * 8, close * 8, 1e-3 * 8], [8], lambda lr, bs, seed: 0.9 if lr == close * 8 else 0.3 + 0.01 * seed
    )
    scores["ratio"] = scores["learning_rate"] / scores["batch_size"]
    res = stats.task_slopes(scores, None, n_boot=50, seed=0).iloc[0]
    assert res["best_ratio"] == close * 8 / 8  # the exact grid value, not its neighbour
    assert res["best_ratio_lo"] == res["best_ratio_hi"] == close * 8 / 8
    # one seed: runs are resampled within each ratio, and each of the three ratios is one stratum
    one = stats.task_slopes(scores[scores["seed"] == 0], None, n_boot=50, seed=0).iloc[0]
    assert one["resampled"] == "none" and math.isnan(one["slope_lo"])


def test_a_derived_ratio_is_canonical_so_equal_ratios_group():
    """lr 3e-4 / bs 3 is 9.999999999999999e-05 and lr 7e-4 / bs 7 is 1e-04 in binary floating
    point; a ratio derived from the learning rate is canonical, so they are one grid ratio."""
    assert 3e-4 / 3 != 7e-4 / 7
    scores = _grid_scores([3e-4, 7e-4], [3, 7], lambda lr, bs, seed: 0.5 + 0.1 * math.log10(lr / bs) + 0.01 * seed)
    res = stats.ratio_invariance(scores, None, n_boot=20)  # no ratio column: derived
    assert res["verdict"][0] != "not estimable", res["reason"][0]
    assert res["n_batch_sizes"][0] == 2


# ------------------------------------------------------------------ exclusions


def test_excluded_cells_are_counted_not_filled():
    scores, items = simulate(np.random.default_rng(4), 1, **PLANTED, n_items=80)
    scores["status"] = "ok"
    bad_run = scores["run_id"].unique()[3]
    scores.loc[scores["run_id"] == bad_run, ["status", "value"]] = ["diverged", np.nan]
    nan_row = scores.index[(scores["task"] == "t1") & (scores["run_id"] != bad_run)][0]
    scores.loc[nan_row, "value"] = np.nan
    items = items[
        ~((items["run_id"] == bad_run) | ((items["run_id"] == scores.loc[nan_row, "run_id"]) & (items["task"] == "t1")))
    ]
    res = stats.task_slopes(scores, items, n_boot=50).set_index("task")
    assert res.loc["t0", "n_excluded"] == 1 and res.loc["t1", "n_excluded"] == 2
    assert res.loc["t0", "n_cells"] == 19 and res.loc["t1", "n_cells"] == 18
    # the slope is the fit on the remaining cells: nothing was imputed
    kept = scores[(scores["task"] == "t1") & scores["value"].notna() & (scores["status"] == "ok")]
    assert res.loc["t1", "slope"] == pytest.approx(np.polyfit(np.log10(kept["ratio"]), kept["value"], 1)[0])
    split = stats.split_statistic(scores, items, n_boot=50)
    assert split["n_excluded"][0] == 5
    inv = stats.ratio_invariance(scores, items, n_boot=50)
    assert inv.set_index("task").loc["t1", "n_excluded"] == 2
    # a task with every cell excluded keeps its row, with NaN estimates
    scores.loc[scores["task"] == "t3", "status"] = "diverged"
    res = stats.task_slopes(scores, items, n_boot=20).set_index("task")
    assert res.loc["t3", "n_cells"] == 0 and res.loc["t3", "n_excluded"] == 20 and np.isnan(res.loc["t3", "slope"])
    split = stats.split_statistic(scores, items, n_boot=20)
    assert split["n_tasks"][0] == 3
    # a kept cell without items is an error, not a silent drop
    with pytest.raises(ValueError, match="no items"):
        stats.task_slopes(scores, items[items["run_id"] != scores["run_id"].iloc[0]], n_boot=5)


def test_confounding_note():
    scores, _ = simulate(np.random.default_rng(0), 1, slopes=(0.1,), categories=("reasoning",), n_items=10)
    note = confounding_note(scores)
    assert "examples_seen held fixed" in note and "fewer updates" in note
    scores["optimizer_steps"], scores["examples_seen"] = 500, 500 * scores["batch_size"]
    assert "optimizer_steps held fixed" in confounding_note(scores)
    scores["optimizer_steps"] = 1000 + 100 * scores["seed"]
    scores["examples_seen"] = scores["optimizer_steps"] * scores["batch_size"]
    assert "neither held fixed" in confounding_note(scores)
    scores["status"] = np.where(scores["run_id"] == scores["run_id"].iloc[0], "diverged", "ok")
    assert "1 runs not ok" in confounding_note(scores)
    assert "one batch size" in confounding_note(scores[scores["batch_size"] == 8])
    assert "cannot tell" in confounding_note(scores.drop(columns="optimizer_steps"))


# ------------------------------------------------------------------ the real results file


def _real_items(scores):
    """Items from lm-eval sample files next to the scores table, or None when any is missing."""
    rows = []
    prim = scores[scores["primary"]]
    if "status" in prim.columns:
        prim = prim[prim["status"] == "ok"]
    for run_id, task, metric in prim[["run_id", "task", "metric"]].drop_duplicates().itertuples(index=False):
        path = REPO / "results" / "runs" / run_id / "eval" / "samples" / f"{task}.jsonl"
        name, filt = metric.split(",", 1)
        try:
            with open(path) as f:
                for line in f:
                    r = json.loads(line)
                    if r.get("filter") == filt and name in r:
                        rows.append((run_id, task, r["doc_id"], float(r[name])))
        except (OSError, ValueError):  # missing, or being rewritten
            return None
    return pd.DataFrame(rows, columns=["run_id", "task", "doc_id", "score"])


@pytest.mark.skipif(not REAL_SCORES.exists(), reason="no results/tables/scores.csv")
def test_real_scores_file():
    try:  # the workflow may be rewriting results/ while the tests run
        scores = pd.read_csv(REAL_SCORES)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        pytest.skip("results/tables/scores.csv vanished or is being rewritten")
    slopes = stats.task_slopes(scores, None, n_boot=200)
    ok = slopes[slopes["n_cells"] > 0]
    assert len(ok) and np.isfinite(ok["slope"]).all() and np.isfinite(ok["best_ratio"]).all()
    items = _real_items(scores)
    if items is not None:
        with_items = stats.task_slopes(scores, items, n_boot=200)
        assert np.allclose(with_items["slope"], slopes["slope"], equal_nan=True)
        assert np.isfinite(with_items.loc[with_items["n_cells"] > 0, ["slope_lo", "slope_hi"]]).all().all()
    split = stats.split_statistic(scores, items, n_boot=200)
    assert len(split) and np.isfinite(split["split"]).all()
    inv = stats.ratio_invariance(scores, items, n_boot=200)
    prim = scores[scores["primary"] & scores["value"].notna()]
    if "status" in prim.columns:
        prim = prim[prim["status"] == "ok"]
    for (model, stage), g in prim.groupby(["model", "stage"]):
        pairs = g.groupby("ratio")["batch_size"].nunique()
        estimable = g["batch_size"].nunique() >= 2 and (pairs >= 2).any()
        verdicts = inv.loc[(inv["model"] == model) & (inv["stage"] == stage), "verdict"]
        if estimable:
            assert (verdicts != "not estimable").all()
        else:
            assert (verdicts == "not estimable").all()
    note = confounding_note(scores)
    assert note and all(line.split(": ", 1)[1] for line in note.splitlines())
