"""Named cells beside the published SmolTulu scores, like with like.

Score values below are dyadic fractions (k / 2^n), so means and percentages are exact in
floating point and compared with ``==``.
"""

import math

import pandas as pd
import pytest
from conftest import small_study

from workflow_scripts.builtin_tasks import builtin_metrics
from workflow_scripts.config import ConfigError, load_study
from workflow_scripts.plots import reference_figure
from workflow_scripts.reference import PAIRINGS, PUBLISHED_COLUMNS, PUBLISHED_CSV, reference_table

RUN = "m/sft/lr9e-05_bs8_s0"
SFT_1130 = {"SmolTulu SFT-1130": RUN}  # published: ARC 51.0, BBH 34.7, GSM8K 49.0, IFEval 61.0, PIQA 72.7

# the config's primary metric per task (as studies/smoltulu-1.7b.yaml marks them)
PRIMARY = {
    "arc_easy": "acc_norm,none",
    "arc_challenge": "acc_norm,none",
    "gsm8k": "exact_match,strict-match",
    "ifeval": "prompt_level_strict_acc,none",
    "piqa": "acc_norm,none",
    "bbh": "exact_match,get-answer",
    "bbh_fewshot": "exact_match,none",
    "arith": "exact_match,none",
}

METRICS = {
    ("arc_easy", "acc,none"): 0.875,
    ("arc_easy", "acc_norm,none"): 0.625,
    ("arc_challenge", "acc,none"): 0.5,
    ("arc_challenge", "acc_norm,none"): 0.375,
    ("gsm8k", "exact_match,strict-match"): 0.4375,
    ("gsm8k", "exact_match,flexible-extract"): 0.5,
    ("ifeval", "prompt_level_strict_acc,none"): 0.5,
    ("ifeval", "inst_level_strict_acc,none"): 0.625,
    ("ifeval", "prompt_level_loose_acc,none"): 0.75,
    ("ifeval", "inst_level_loose_acc,none"): 0.875,
    ("piqa", "acc,none"): 0.6875,
    ("piqa", "acc_norm,none"): 0.75,
    ("arith", "exact_match,none"): 0.9375,
}


def scores(metrics=None, run_id=RUN, status="ok", primary=None):
    """A tidy scores frame as aggregate.scores_table writes it: one row per task x metric."""
    metrics = METRICS if metrics is None else metrics
    primary = PRIMARY if primary is None else primary
    return pd.DataFrame(
        [
            {"run_id": run_id, "task": t, "metric": m, "value": v, "primary": primary[t] == m, "status": status}
            for (t, m), v in metrics.items()
        ]
    )


def table(frame, pairs=SFT_1130):
    return reference_table(frame, pd.read_csv(PUBLISHED_CSV), pairs).set_index("benchmark")


def test_reference_rows_put_ours_beside_the_published_score_where_tasks_match():
    ref = reference_table(scores(), pd.read_csv(PUBLISHED_CSV), SFT_1130)
    got = ref.set_index("benchmark")
    assert sorted(got.index) == ["arc_avg", "gsm8k_5shot", "ifeval_avg", "piqa"]  # arith: no published column
    assert (got["status"] == "ok").all() and (got["missing"] == "").all()
    assert got.loc["gsm8k_5shot", "published_score"] == 49.0  # SmolTulu SFT-1130, paper Table 3
    assert got.loc["gsm8k_5shot", "our_score"] == 43.75  # strict-match, not flexible-extract (50)
    assert got.loc["gsm8k_5shot", "metrics"] == "gsm8k:exact_match,strict-match"
    assert got.loc["gsm8k_5shot", "difference"] == 43.75 - 49.0
    assert got.loc["piqa", "our_score"] == 75.0  # acc_norm
    fig = reference_figure(scores(), pd.read_csv(PUBLISHED_CSV), "s", named=ref)
    assert "named cells" in fig._suptitle.get_text()


def test_ifeval_is_the_mean_of_its_four_metrics_not_the_configured_primary():
    got = table(scores())  # primary: prompt_level_strict_acc (0.5 -> 50.0)
    assert got.loc["ifeval_avg", "our_score"] == 100 * (0.5 + 0.625 + 0.75 + 0.875) / 4 == 68.75
    assert got.loc["ifeval_avg", "metrics"] == (
        "ifeval:prompt_level_strict_acc,none + "
        "ifeval:inst_level_strict_acc,none + "
        "ifeval:prompt_level_loose_acc,none + ifeval:inst_level_loose_acc,none"
    )
    assert got.loc["ifeval_avg", "difference"] == 68.75 - 61.0
    assert got.loc["ifeval_avg", "tasks"] == "ifeval"


def test_arc_is_the_mean_of_easy_and_challenge_on_normalised_accuracy():
    got = table(scores())
    assert got.loc["arc_avg", "our_score"] == 100 * (0.625 + 0.375) / 2 == 50.0  # acc would give 68.75
    assert got.loc["arc_avg", "tasks"] == "arc_challenge+arc_easy"
    assert got.loc["arc_avg", "metrics"] == "arc_easy:acc_norm,none + arc_challenge:acc_norm,none"
    assert got.loc["arc_avg", "difference"] == 50.0 - 51.0


def test_the_pairing_does_not_follow_the_primary_metric_of_the_config():
    other = {
        **PRIMARY,
        "arc_easy": "acc,none",
        "arc_challenge": "acc,none",
        "gsm8k": "exact_match,flexible-extract",
        "ifeval": "inst_level_loose_acc,none",
        "piqa": "acc,none",
    }
    pd.testing.assert_frame_equal(table(scores(primary=other)), table(scores()))


def test_a_missing_metric_is_reported_not_substituted():
    partial = {
        k: v
        for k, v in METRICS.items()
        if k
        not in {
            ("ifeval", "prompt_level_loose_acc,none"),
            ("ifeval", "inst_level_loose_acc,none"),
            ("arc_challenge", "acc_norm,none"),
            ("arc_challenge", "acc,none"),
            ("piqa", "acc_norm,none"),
        }
    }
    partial[("gsm8k", "exact_match,strict-match")] = math.nan  # a row without a number
    got = table(scores(partial))
    for column, missing in [
        ("ifeval_avg", "ifeval:prompt_level_loose_acc,none + ifeval:inst_level_loose_acc,none"),
        ("arc_avg", "arc_challenge:acc_norm,none"),  # not arc_easy alone
        ("piqa", "piqa:acc_norm,none"),  # not piqa's acc
        ("gsm8k_5shot", "gsm8k:exact_match,strict-match"),
    ]:  # not flexible-extract
        assert got.loc[column, "status"] == "incomplete"
        assert got.loc[column, "missing"] == missing
        assert math.isnan(got.loc[column, "our_score"]) and math.isnan(got.loc[column, "difference"])
    assert got.loc["arc_avg", "metrics"] == "arc_easy:acc_norm,none + arc_challenge:acc_norm,none"


def test_a_cell_that_was_not_scored_keeps_its_status_and_has_no_score():
    # aggregate.score_rows: a diverged cell has one row per task, its primary metric, no value
    diverged = {(t, PRIMARY[t]): math.nan for t in ("arc_easy", "arc_challenge", "ifeval")}
    got = table(scores(diverged, status="diverged"))
    assert sorted(got.index) == ["arc_avg", "ifeval_avg"]
    assert (got["status"] == "diverged").all() and (got["missing"] == "").all()
    assert got["our_score"].isna().all()


def test_bbh_prefers_the_answer_only_variant_and_names_the_one_it_used():
    cot = {("bbh", "exact_match,get-answer"): 0.3125}
    got = table(scores({**METRICS, **cot}))
    assert got.loc["bbh_3shot", "metrics"] == "bbh:exact_match,get-answer"
    assert got.loc["bbh_3shot", "our_score"] == 31.25
    both = {**METRICS, **cot, ("bbh_fewshot", "exact_match,none"): 0.34375}
    got = table(scores(both))
    assert got.loc["bbh_3shot", "metrics"] == "bbh_fewshot:exact_match,none"
    assert got.loc["bbh_3shot", "our_score"] == 34.375
    assert got.loc["bbh_3shot", "difference"] == 34.375 - 34.7


def test_every_paired_metric_is_one_lm_eval_reports_for_that_task():
    for column, variants in PAIRINGS.items():
        for variant in variants:
            for task, metric in variant:
                assert metric in builtin_metrics(task), (column, task, metric)
                assert PUBLISHED_COLUMNS[task] == column
    assert set(PAIRINGS) == set(pd.read_csv(PUBLISHED_CSV).columns) - {"model"}


def test_reference_names_are_checked_before_any_job():
    cfg = small_study(ratios=(1e-3,))
    cfg["reference"] = {"SmolTulu SFT-9999": "tiny-llama/sft/r1e-03_bs4_s0"}
    with pytest.raises(ConfigError, match="reference.SmolTulu SFT-9999"):
        load_study(cfg)
    cfg["reference"] = {"SmolTulu SFT-1130": "tiny-llama/sft/r5e-03_bs4_s0"}
    with pytest.raises(ConfigError, match="not a cell of this study"):
        load_study(cfg)
