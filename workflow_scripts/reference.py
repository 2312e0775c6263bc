"""Our cells beside the published SmolTulu scores (reference/smoltulu_results.csv).

A study names which of its cells stands for which published model (``reference:`` in the
config, e.g. ``SmolTulu SFT-1130: smollm2-1.7b/sft/lr9e-05_bs8_s0``); the table puts the
two side by side per benchmark where the tasks match. The published numbers come from
lighteval (SmolLM2's evaluation code), ours from lm-eval: close, not identical, settings.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PUBLISHED_CSV = Path(__file__).resolve().parent.parent / "reference" / "smoltulu_results.csv"

# our lm-eval task -> column of the published table (both ARC tasks -> their average)
PUBLISHED_COLUMNS = {"arc_challenge": "arc_avg", "arc_easy": "arc_avg", "gsm8k": "gsm8k_5shot",
                     "hellaswag": "hellaswag", "ifeval": "ifeval_avg", "piqa": "piqa",
                     "leaderboard_mmlu_pro": "mmlu_pro_mcf", "bbh": "bbh_3shot"}
REFERENCE_COLUMNS = ["published", "run_id", "benchmark", "tasks", "published_score", "our_score", "difference",
                     "status"]


def published_models(path: str | Path = PUBLISHED_CSV) -> list[str]:
    return pd.read_csv(path)["model"].tolist()


def reference_table(scores: pd.DataFrame, published: pd.DataFrame, pairs: dict[str, str]) -> pd.DataFrame:
    """One row per (published model, benchmark) the study can compare: published score, ours
    (percent; the mean of our tasks that make up the benchmark) and the difference."""
    prim = scores[scores["primary"]]
    rows = []
    for name, run_id in pairs.items():
        pub = published[published["model"] == name]
        if pub.empty:
            raise KeyError(f"{name!r} is not a model of the published table")
        ours = prim[prim["run_id"] == run_id]
        status = ours["status"].iloc[0] if len(ours) else "missing"
        for column in sorted({PUBLISHED_COLUMNS[t] for t in ours["task"] if t in PUBLISHED_COLUMNS}):
            tasks = sorted(t for t in ours["task"] if PUBLISHED_COLUMNS.get(t) == column)
            value = 100 * ours[ours["task"].isin(tasks)]["value"].mean()
            ref = float(pub[column].iloc[0])
            rows.append({"published": name, "run_id": run_id, "benchmark": column, "tasks": "+".join(tasks),
                         "published_score": ref, "our_score": value, "difference": value - ref, "status": status})
    return pd.DataFrame(rows, columns=REFERENCE_COLUMNS)
