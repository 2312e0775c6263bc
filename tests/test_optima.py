"""Where each task peaks, the category comparison, chance-scored exclusions and model size
(workflow_scripts.optima, mixed_model, sensitivity, sizes), on hand-built tables whose answers
are known."""

import math

import numpy as np
import pandas as pd
import pytest

from workflow_scripts.items import chance
from workflow_scripts.mixed_model import mixed_model
from workflow_scripts.optima import optima_tables, peak, tasks_needed
from workflow_scripts.sensitivity import exclusions, impute_excluded
from workflow_scripts.sizes import size_table

XS = np.log10([1e-5, 3e-5, 1e-4, 3e-4, 1e-3])


def test_peak_is_the_vertex_of_an_exact_parabola_and_a_bound_at_the_edges():
    for true in (-4.3, -4.0, -3.7):  # between grid points, on one, and off-centre
        M = (0.8 - 0.3 * (XS - true) ** 2)[None]
        opt, edge = peak(XS, M)
        assert opt[0] == pytest.approx(true, abs=1e-9) and edge[0] == 0
    rising, falling = XS[None] + 10, -XS[None]
    assert peak(XS, rising)[0][0] == XS[-1] and peak(XS, rising)[1][0] == 1
    assert peak(XS, falling)[0][0] == XS[0] and peak(XS, falling)[1][0] == -1
    # a tie goes to the smaller ratio; no finite mean: NaN; one ratio: that ratio, no edge
    tie = np.array([[0.1, 0.5, 0.5, 0.2, 0.1]])
    assert peak(XS, tie)[0][0] <= XS[2]
    assert math.isnan(peak(XS, np.full((1, 5), np.nan))[0][0])
    assert peak(XS[:1], np.array([[0.3]])) == (pytest.approx([XS[0]]), pytest.approx([0]))


def _study(optima: dict, curvature=0.4, seeds=(0, 1), batch_sizes=(8, 32), model="m", n_items=60, rng=None):
    """Scores and items whose task curves peak exactly at ``optima`` (task -> (category, log10 optimum))."""
    rng = rng or np.random.default_rng(0)
    score_rows, item_rows = [], []
    for r, x in zip((10**XS).tolist(), XS):
        for bs in batch_sizes:
            for seed in seeds:
                run = f"{model}/sft/r{r:.0e}_bs{bs}_s{seed}"
                for task, (cat, opt) in optima.items():
                    p = max(0.85 - curvature * (x - opt) ** 2, 0.05)
                    # items: exactly round(p * n) correct, so every cell's mean is p to 1/n
                    k = int(round(p * n_items))
                    scores = np.r_[np.ones(k), np.zeros(n_items - k)]
                    item_rows += [
                        {"run_id": run, "task": task, "doc_id": d, "score": s, "chance": 0.25}
                        for d, s in enumerate(scores)
                    ]
                    score_rows.append(
                        {
                            "model": model,
                            "stage": "sft",
                            "run_id": run,
                            "batch_size": bs,
                            "seed": seed,
                            "task": task,
                            "category": cat,
                            "primary": True,
                            "value": k / n_items,
                            "ratio": r,
                            "learning_rate": r * bs,
                            "status": "ok",
                        }
                    )
    return pd.DataFrame(score_rows), pd.DataFrame(item_rows)


def _units(optima: dict) -> list[dict]:
    return [{"unit": t, "tasks": [t], "category": c, "role": "primary"} for t, (c, _) in optima.items()]


PLANTED = {"r1": ("reasoning", -3.6), "r2": ("reasoning", -3.8), "p1": ("pattern", -4.5), "p2": ("pattern", -4.4)}


def test_optima_and_the_category_difference_recover_planted_peaks():
    scores, items = _study(PLANTED, n_items=400)
    optima, comparison, draws = optima_tables(scores, items, _units(PLANTED), n_boot=200, seed=1)
    got = optima.set_index("unit")["log10_opt"]
    for task, (_, opt) in PLANTED.items():  # items quantise p to 1/400: the vertex moves a little
        assert got[task] == pytest.approx(opt, abs=0.04), task
    row = comparison.iloc[0]
    assert row["set"] == "primary" and row["bound"] == ""
    assert row["diff"] == pytest.approx(-3.7 - -4.45, abs=0.04)
    assert row["diff_lo"] > 0.5 and row["diff_hi"] < 1.0  # these tasks: clearly apart
    # as categories: 2 + 2 units can never reach 0.05, and the table says what would
    assert row["p_min"] == pytest.approx(1 / 3) and row["p_value"] >= row["p_min"]
    assert row["tasks_needed"] == 4 == tasks_needed()
    assert row["mixed_diff"] == pytest.approx(row["diff"], abs=0.1) and row["agree"] == "yes"
    assert set(draws) == {("m", "sft", t) for t in PLANTED} and len(draws[("m", "sft", "r1")]) == 200


def test_a_task_group_is_the_mean_of_its_members_and_counts_once():
    planted = {**PLANTED, "r3": ("reasoning", -3.0)}
    scores, items = _study(planted, n_items=100)
    units = [
        {"unit": "arc", "tasks": ["r1", "r3"], "category": "reasoning", "role": "primary"},
        {"unit": "r2", "tasks": ["r2"], "category": "reasoning", "role": "primary"},
        {"unit": "p1", "tasks": ["p1"], "category": "pattern", "role": "primary"},
        {"unit": "p2", "tasks": ["p2"], "category": "pattern", "role": "exploratory"},
    ]
    optima, comparison, _ = optima_tables(scores, items, units, n_boot=50)
    arc = optima.set_index("unit").loc["arc"]
    assert arc["tasks"] == "r1+r3" and arc["n_items"] == 200
    # the group's curve is the mean of two parabolas of equal curvature: it peaks midway
    assert arc["log10_opt"] == pytest.approx(-3.3, abs=0.05)
    primary = comparison.set_index("set").loc["primary"]
    assert (primary["n_reasoning"], primary["n_pattern"]) == (2, 1)
    assert comparison.set_index("set").loc["exploratory", "n_pattern"] == 1


def test_an_optimum_at_the_grid_edge_is_a_bound_and_the_difference_says_which_way():
    planted = {"r1": ("reasoning", -2.0), "r2": ("reasoning", -3.7), "p1": ("pattern", -4.5), "p2": ("pattern", -4.4)}
    scores, items = _study(planted)
    optima, comparison, _ = optima_tables(scores, items, _units(planted), n_boot=50)
    r1 = optima.set_index("unit").loc["r1"]
    assert r1["edge"] == "high" and r1["log10_opt"] == pytest.approx(XS[-1]) and r1["edge_share"] == 1.0
    # a reasoning unit that may peak higher still: the true difference can only be larger
    assert comparison.iloc[0]["bound"] == "lower"


def test_excluded_cells_are_counted_per_ratio_and_scored_at_chance_in_the_sensitivity_run():
    scores, items = _study(PLANTED, seeds=(0,), batch_sizes=(8,))
    top = scores["ratio"] == 1e-3
    scores.loc[top, "status"] = "diverged"
    items = items[~items["run_id"].isin(scores.loc[top, "run_id"])]  # a diverged run has no samples
    ex = exclusions(scores).set_index("ratio")
    assert ex.loc[1e-3, "n_excluded"] == 1 and ex.loc[1e-3, "statuses"] == "diverged 1"
    assert ex["n_excluded"].sum() == 1 and ex["n_runs"].eq(1).all()
    imputed, imputed_items = impute_excluded(scores, items)
    assert (imputed.loc[top, "value"] == 0.25).all() and (imputed["status"] == "ok").all()
    added = imputed_items[imputed_items["run_id"].isin(scores.loc[top, "run_id"])]
    assert len(added) == 4 * 60 and (added["score"] == 0.25).all()
    # without the diverged top ratio r1 (-3.6) peaks at the new edge; at chance it is inside
    kept, _, _ = optima_tables(scores, items, _units(PLANTED), n_boot=0)
    at_chance, _, _ = optima_tables(imputed, imputed_items, _units(PLANTED), n_boot=0, scoring="chance")
    assert kept.set_index("unit").loc["r1", "n_excluded"] == 1
    assert at_chance.set_index("unit").loc["r1", "scoring"] == "chance"
    assert at_chance.set_index("unit").loc["r1", "n_ratios"] == 5 == kept.set_index("unit").loc["r1", "n_ratios"] + 1


def test_chance_of_an_item_is_one_over_its_choices_or_zero_when_generated():
    mc = {"arguments": [["q", "a"], ["q", "b"], ["q", "c"], ["q", "d"]]}
    gen = {"arguments": [["q", {"until": ["\n"], "max_gen_toks": 32}]]}
    assert chance(mc) == 0.25 and chance(gen) == 0.0 and chance({}) == 0.0


def test_mixed_model_says_why_it_has_no_answer():
    flat = {"r1": ("reasoning", -3.7), "p1": ("pattern", -4.4)}
    scores, items = _study(flat, curvature=0.0)
    _, comparison, _ = optima_tables(scores, items, _units(flat), n_boot=0)
    assert comparison.iloc[0]["mixed_note"] == "no unit's score varies"
    assert mixed_model([])["mixed_note"] == "no unit's score varies"


def test_size_table_recovers_a_planted_power_law_and_names_units_that_change_sides():
    params = {"s": 1e6, "m": 1e7, "l": 1e8}
    alpha = -0.5
    frames, items = [], []
    for k, (model, n) in enumerate(params.items()):
        shift = alpha * (math.log10(n) - 7)
        planted = {
            "r1": ("reasoning", -3.8 + shift),
            "p1": ("pattern", -4.2 + shift),
            # a task that moves against the others: above the mean at the small size, below at the large
            "x": ("pattern", -4.0 + shift + 0.6 * (1 - k)),
        }
        s, i = _study(planted, model=model, n_items=400)
        frames.append(s)
        items.append(i)
    scores, items = pd.concat(frames), pd.concat(items)
    units = _units({"r1": ("reasoning", 0), "p1": ("pattern", 0), "x": ("pattern", 0)})
    optima, _, draws = optima_tables(scores, items, units, n_boot=100)
    sizes = size_table(optima, draws, params)
    cat = sizes[(sizes["level"] == "category") & (sizes["name"] == "reasoning")]
    assert list(cat["model"]) == ["s", "m", "l"] and cat["n_sizes"].eq(3).all()
    assert cat["alpha"].iloc[0] == pytest.approx(alpha, abs=0.05)
    assert cat["alpha_lo"].iloc[0] <= alpha <= cat["alpha_hi"].iloc[0]
    units_rows = sizes[sizes["level"] == "unit"].set_index(["name", "model"])
    assert bool(units_rows.loc[("x", "s"), "changes_side"]) and not units_rows.loc[("r1", "s"), "changes_side"]
    assert units_rows.loc[("x", "s"), "side"] == "higher" and units_rows.loc[("x", "l"), "side"] == "lower"
    # two sizes: a comparison, no power law; one size or unknown counts: nothing
    two = size_table(optima[optima["model"] != "l"], draws, params)
    assert two["alpha"].isna().all() and two["n_sizes"].eq(2).all()
    assert size_table(optima, draws, {"s": 1e6}).empty
