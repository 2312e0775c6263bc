"""Stability across seeds on hand-built tables: the pooled spread of score and final loss,
the one-seed warning, and the figure."""

import math

import pandas as pd
import pytest

from workflow_scripts.stability import ONE_SEED, pooled_sd, stability_sentences, stability_table
from workflow_scripts.stability_figure import stability_figure

# (ratio, batch size, seed, score, final loss, status)
RUNS = [
    (1e-4, 4, 0, 0.2, 1.0, "ok"),
    (1e-4, 4, 1, 0.4, 1.2, "ok"),
    (1e-4, 8, 0, 0.5, 2.0, "ok"),
    (1e-4, 8, 1, 0.6, 2.0, "ok"),
    (1e-4, 8, 2, 0.7, 2.3, "ok"),
    (1e-4, 8, 3, None, float("nan"), "diverged"),  # left out
    (1e-3, 4, 0, 0.9, 0.5, "ok"),
    (1e-3, 8, 0, 0.8, 0.6, "ok"),
]


def _tables(runs=RUNS, model="m"):
    score_rows, run_rows = [], []
    for ratio, bs, seed, value, loss, status in runs:
        run = {"model": model, "stage": "sft", "run_id": f"{model}/sft/r{ratio}_bs{bs}_s{seed}"}
        run.update(ratio=ratio, batch_size=bs, seed=seed, status=status)
        run_rows.append({**run, "final_loss": loss})
        for task, category, shift in (("arith", "reasoning", 0.0), ("seq", "pattern", 0.1)):
            v = None if value is None else value + shift
            score_rows.append({**run, "task": task, "category": category, "metric": "acc,none", "value": v})
            score_rows.append({**score_rows[-1], "metric": "acc_norm,none", "primary": False, "value": 0.0})
            score_rows[-2]["primary"] = True
    return pd.DataFrame(score_rows), pd.DataFrame(run_rows)


def test_pooled_sd_by_hand():
    sd, df = pooled_sd(pd.Series([0.2, 0.4, 0.5, 0.6, 0.7, 1.0]), pd.Series([4, 4, 8, 8, 8, 16]))
    assert df == 3 and sd == pytest.approx(math.sqrt(0.04 / 3))
    sd, df = pooled_sd(pd.Series([0.2, 0.5]), pd.Series([4, 8]))
    assert df == 0 and math.isnan(sd)


def test_stability_pools_over_batch_sizes_and_leaves_diverged_runs_out():
    scores, runs = _tables()
    st = stability_table(scores, runs)
    assert list(st[["ratio", "task"]].itertuples(index=False, name=None)) == [
        (1e-4, "arith"),
        (1e-4, "seq"),
        (1e-3, "arith"),
        (1e-3, "seq"),
    ]
    a = st.iloc[0]
    assert (a["n_runs"], a["n_seeds"], a["n_batch_sizes"], a["df"], a["loss_df"]) == (5, 3, 2, 3, 3)
    assert a["score_sd"] == pytest.approx(math.sqrt(0.04 / 3)) and a["score_mean"] == pytest.approx(0.48)
    assert st.iloc[1]["score_sd"] == pytest.approx(a["score_sd"])  # the same spread, shifted scores
    assert a["final_loss_sd"] == pytest.approx(math.sqrt(0.08 / 3)) and a["final_loss_mean"] == pytest.approx(1.7)
    one = st.iloc[2]
    assert one["df"] == 0 and math.isnan(one["score_sd"]) and math.isnan(one["final_loss_sd"])
    assert stability_table(scores)["final_loss_sd"].isna().all()  # no runs table: no loss spread
    (text,) = stability_sentences(st)
    assert "measured at 1 of 2 ratios; the others have one seed" in text and ONE_SEED not in text
    assert f"ranges {math.sqrt(0.04 / 3):.3g} to {math.sqrt(0.04 / 3):.3g}" in text


def test_one_seed_is_said_per_model_and_stage():
    single = [r for r in RUNS if r[2] == 0]
    scores, runs = _tables()
    s1, r1 = _tables(single, model="n")
    st = stability_table(pd.concat([scores, s1]), pd.concat([runs, r1]))
    sentences = stability_sentences(st)
    assert sentences[1] == f"n / sft, stability across seeds: {ONE_SEED}."
    assert ONE_SEED not in sentences[0]


def test_the_figure_draws_the_spread_or_says_one_seed(tmp_path):
    from workflow_scripts.canvas import save

    scores, runs = _tables()
    s1, r1 = _tables([r for r in RUNS if r[2] == 0], model="n")
    st = stability_table(pd.concat([scores, s1]), pd.concat([runs, r1]))
    fig = stability_figure(st, "t")
    assert len(fig.axes) == 4
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("one seed" in t for t in texts)
    save(fig, tmp_path / "s.pdf", tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes().startswith(b"\x89PNG")
    assert stability_figure(st.iloc[0:0], "t").axes
    alone = stability_figure(stability_table(s1, r1), "t")  # one seed everywhere: one message
    assert len(alone.axes) == 1 and "one seed" in alone.axes[0].texts[0].get_text()
