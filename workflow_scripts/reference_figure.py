"""The reference figure (plots.write_figures saves it): the study's named cells beside the
published models they stand for, or its best cells beside the published SmolTulu scores
where tasks match. Which of our metrics pairs with which published column is reference.py's."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .canvas import message_figure
from .reference import PUBLISHED_COLUMNS


def _score_bars(data: pd.DataFrame, x: str, palette: str, title: str):
    """Grouped bars of ``score`` (%) per published benchmark column, one colour per ``who``."""
    fig, ax = plt.subplots(figsize=(max(6.4, 1.6 * data[x].nunique() + 3), 4.0))
    sns.barplot(data=data, x=x, y="score", hue="who", palette=palette, ax=ax)
    ax.set_xlabel("benchmark (published column)")
    ax.set_ylabel("score (%)")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(title, fontsize=9)
    return fig


def named_reference_figure(ref: pd.DataFrame, study: str):
    """Each named cell beside the published model it stands for, per benchmark."""
    long = pd.concat(
        [
            ref.assign(who=ref["published"] + " (published)", score=ref["published_score"]),
            ref.assign(
                who=ref["published"] + ": ours " + ref["run_id"].str.split("/", n=1).str[1], score=ref["our_score"]
            ),
        ]
    )
    return _score_bars(
        long, "benchmark", "Paired", f"{study}: the paper's named cells, published (lighteval) beside ours (lm-eval)"
    )


def reference_figure(
    scores: pd.DataFrame, published: pd.DataFrame | None, study: str, named: pd.DataFrame | None = None
):
    """The study's named cells beside the published models they stand for (``reference:``
    in the config); without names, our best cell per task beside the published scores."""
    if named is not None and len(named):
        return named_reference_figure(named, study)
    prim = scores[scores["primary"] & (scores.get("status", "ok") == "ok")]
    prim = prim[prim["task"].isin(PUBLISHED_COLUMNS)]
    if published is None or prim.empty:
        return message_figure(
            f"{study}: published SmolTulu scores",
            "None of this study's tasks has a published SmolTulu score\n"
            "(those are gsm8k, arc, hellaswag, ifeval, piqa, MMLU-Pro, bbh):\n"
            "see the 1.7B study for the side-by-side comparison.",
        )
    ours = prim.groupby(["model", "stage", "task"], as_index=False)["value"].max()
    ours["column"] = ours["task"].map(PUBLISHED_COLUMNS)
    ours = ours.groupby(["model", "stage", "column"], as_index=False)["value"].mean()
    ours["who"] = "ours: best " + ours["model"] + " " + ours["stage"] + " cell"
    ours["score"] = 100 * ours["value"]
    pub = published.melt(id_vars="model", var_name="column", value_name="score")
    pub = pub[pub["column"].isin(ours["column"])].rename(columns={"model": "who"})
    both = pd.concat([pub[["who", "column", "score"]], ours[["who", "column", "score"]]])
    return _score_bars(
        both,
        "column",
        "colorblind",
        f"{study}: our best cells beside published SmolTulu scores (lighteval; ours: lm-eval)",
    )
