"""Our cells beside the published SmolTulu scores (reference/smoltulu_results.csv).

A study names which of its cells stands for which published model (``reference:`` in the
config, e.g. ``SmolTulu SFT-1130: smollm2-1.7b/sft/lr9e-05_bs8_s0``); the table puts the
two side by side per published benchmark column. The published numbers come from lighteval
(SmolLM2's evaluation code), ours from lm-eval: close, not identical, settings.

Like with like: each published column is paired (``PAIRINGS``) with the lm-eval task(s) and
the metric(s) that measure the same quantity, whatever metric the study's config marks
primary. Our score is the unweighted mean of those parts, read from the tidy scores table
(one row per run x task x metric). A part the run did not report makes the row say so
(``status`` "incomplete", ``missing`` names it; no score) rather than fall back on another
metric. reference/README.md gives the reasons for each pairing and what still differs.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

PUBLISHED_CSV = Path(__file__).resolve().parent.parent / "reference" / "smoltulu_results.csv"

_IFEVAL = tuple(
    ("ifeval", m)
    for m in (
        "prompt_level_strict_acc,none",
        "inst_level_strict_acc,none",
        "prompt_level_loose_acc,none",
        "inst_level_loose_acc,none",
    )
)

# published column -> its variants, in order of preference; a variant is the (our lm-eval task,
# "metric,filter") parts whose unweighted mean is the published quantity. The first variant
# of which the run reported any task is used (only BBH has more than one: lm-eval's
# answer-only and chain-of-thought 3-shot groups). Metric names: builtin_tasks.BUILTINS.
PAIRINGS: dict[str, tuple[tuple[tuple[str, str], ...], ...]] = {
    # SmolLM2's lighteval ARC: arc:easy and arc:challenge, 0-shot, loglikelihood_acc_norm_nospace
    "arc_avg": ((("arc_easy", "acc_norm,none"), ("arc_challenge", "acc_norm,none")),),
    # "BBH (3-shot)": lighteval's custom bbh is answer-only exact match (no chain of thought)
    "bbh_3shot": (
        (("bbh_fewshot", "exact_match,none"),),
        (("bbh", "exact_match,get-answer"),),
        (("bbh_cot_fewshot", "exact_match,get-answer"),),
    ),
    # "GSM8K (5-shot)": quasi exact match of the number after "####" (lm-eval's strict-match)
    "gsm8k_5shot": ((("gsm8k", "exact_match,strict-match"),),),
    "hellaswag": ((("hellaswag", "acc_norm,none"),),),
    # "IFEval (Average prompt/inst)": read as the mean of lighteval's four IFEval metrics
    "ifeval_avg": (_IFEVAL,),
    # "MMLU-Pro (MCF)": letter choices A-J by log-likelihood; one character each, so lighteval's
    # length-normalised accuracy is plain accuracy, the only metric lm-eval reports here
    "mmlu_pro_mcf": ((("leaderboard_mmlu_pro", "acc,none"),),),
    "piqa": ((("piqa", "acc_norm,none"),),),
}

# our lm-eval task -> column of the published table (every task of every variant)
PUBLISHED_COLUMNS = {
    task: column for column, variants in PAIRINGS.items() for variant in variants for task, _ in variant
}
REFERENCE_COLUMNS = [
    "published",
    "run_id",
    "benchmark",
    "tasks",
    "metrics",
    "published_score",
    "our_score",
    "difference",
    "status",
    "missing",
]


def published_models(path: str | Path = PUBLISHED_CSV) -> list[str]:
    return pd.read_csv(path)["model"].tolist()


def part_name(task: str, metric: str) -> str:
    """One part of a pairing as the ``metrics``/``missing`` columns write it: ``task:metric,filter``."""
    return f"{task}:{metric}"


def pairing_for(column: str, tasks_run) -> tuple[tuple[str, str], ...] | None:
    """The variant of ``column`` to use for a run that reported ``tasks_run``; None when the run
    has no task of the column."""
    tasks_run = set(tasks_run)
    for variant in PAIRINGS[column]:
        if any(task in tasks_run for task, _ in variant):
            return variant
    return None


def paired_score(ours: pd.DataFrame, variant: tuple[tuple[str, str], ...]) -> tuple[float, list[str]]:
    """(percent score, missing parts) of one variant from one run's tidy score rows (all
    metrics, primary or not). Any missing part (no row, or no number) gives NaN: never a mean
    of the parts that happen to be there."""
    values, missing = [], []
    for task, metric in variant:
        hit = ours[(ours["task"] == task) & (ours["metric"] == metric)]["value"]
        if len(hit) > 1:
            raise ValueError(f"{len(hit)} score rows for {part_name(task, metric)} of one run; expected one")
        if hit.isna().all():  # no row, or a row without a number
            missing.append(part_name(task, metric))
        else:
            values.append(float(hit.iloc[0]))
    if missing:
        return math.nan, missing
    return 100 * sum(values) / len(values), []


def reference_table(scores: pd.DataFrame, published: pd.DataFrame, pairs: dict[str, str]) -> pd.DataFrame:
    """One row per (published model, benchmark column) the study can compare: the published
    score, ours (percent; the unweighted mean of the column's paired task metrics, see
    ``PAIRINGS``) and the difference. ``metrics`` names exactly what was averaged; a run
    that was not scored (diverged) keeps its status and has no score; a scored run that
    lacks a needed metric is ``incomplete`` with ``missing`` naming it."""
    rows = []
    for name, run_id in pairs.items():
        pub = published[published["model"] == name]
        if pub.empty:
            raise KeyError(f"{name!r} is not a model of the published table")
        ours = scores[scores["run_id"] == run_id]
        run_status = str(ours["status"].iloc[0]) if len(ours) else "missing"
        for column in sorted(PAIRINGS):
            variant = pairing_for(column, ours["task"])
            if variant is None:
                continue
            if run_status != "ok":  # not scored: the status says why, no part is "missing"
                value, missing, status = math.nan, [], run_status
            else:
                value, missing = paired_score(ours, variant)
                status = "incomplete" if missing else "ok"
            ref = float(pub[column].iloc[0])
            rows.append(
                {
                    "published": name,
                    "run_id": run_id,
                    "benchmark": column,
                    "tasks": "+".join(sorted({t for t, _ in variant})),
                    "metrics": " + ".join(part_name(t, m) for t, m in variant),
                    "published_score": ref,
                    "our_score": value,
                    "difference": value - ref,
                    "status": status,
                    "missing": " + ".join(missing),
                }
            )
    return pd.DataFrame(rows, columns=REFERENCE_COLUMNS)
