"""The stability figure: how far a cell's outcome moves when only its seed changes.

One column of panels per model x stage (the ``stability`` table of
:mod:`workflow_scripts.stability`): above, the seed-to-seed sd of each task's primary score
(pooled over batch sizes) against LR/BS, one line per task, reasoning solid and pattern
dashed; below, the same spread of the final training loss. A panel whose ratios all have
one seed says so instead of drawing nothing.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .canvas import message_figure
from .stability import ONE_SEED

CATEGORY_DASHES = {"reasoning": "", "pattern": (4, 2)}


def _wrapped() -> str:
    return ONE_SEED.replace("; ", ";\n")


def _no_seeds(ax, title: str) -> None:
    ax.text(0.5, 0.5, _wrapped(), ha="center", va="center", fontsize=8, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)


def stability_figure(stability: pd.DataFrame, study: str):
    if stability.empty:
        return message_figure(f"{study}: stability across seeds", "No scored cell: nothing to compare across seeds.")
    if not (stability["df"] > 0).any():
        return message_figure(f"{study}: stability across seeds", "Every model x stage has " + _wrapped() + ".")
    groups = sorted(stability.groupby(["model", "stage"]).groups)
    fig, axes = plt.subplots(2, len(groups), figsize=(5.6 * len(groups), 6.4), squeeze=False)
    labels = stability["task"] + " (" + stability["category"] + ")"
    order = sorted(labels.unique(), key=lambda s: (not s.endswith("(reasoning)"), s))
    palette = dict(zip(order, sns.color_palette("colorblind", len(order))))
    for i, (model, stage) in enumerate(groups):
        top, bottom = axes[0][i], axes[1][i]
        title = f"{model} / {stage}"
        g = stability[(stability["model"] == model) & (stability["stage"] == stage) & (stability["df"] > 0)]
        if g.empty:
            _no_seeds(top, title)
            _no_seeds(bottom, f"{title}: final training loss")
            continue
        g = g.assign(label=g["task"] + " (" + g["category"] + ")")
        sns.lineplot(
            data=g,
            x="ratio",
            y="score_sd",
            hue="label",
            style="category",
            hue_order=[x for x in order if x in set(g["label"])],
            dashes=CATEGORY_DASHES,
            palette=palette,
            marker="o",
            ax=top,
        )
        top.set_ylabel("sd of the primary score over seeds")
        lo, hi = int(g["n_seeds"].min()), int(g["n_seeds"].max())
        top.set_title(f"{title} ({lo if lo == hi else f'{lo}-{hi}'} seeds per ratio shown)", fontsize=8)
        handles, names = top.get_legend_handles_labels()
        names = [{"label": "task", "category": "category"}.get(x, x) for x in names]
        top.legend(handles, names, fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        loss = g.drop_duplicates("ratio").dropna(subset=["final_loss_sd"])
        if loss.empty:
            bottom.text(
                0.5, 0.5, "no final training loss recorded", ha="center", va="center", transform=bottom.transAxes
            )
        else:
            bottom.plot(loss["ratio"], loss["final_loss_sd"], "o-", color="black")
        bottom.set_ylabel("sd of the final training loss over seeds")
        bottom.set_title(f"{title}: final training loss", fontsize=8)
        for ax in (top, bottom):
            ax.set_xscale("log")
            ax.set_xlabel("learning rate / effective batch size")
            ax.grid(alpha=0.3)
    fig.suptitle(
        f"{study}: spread across seeds against LR/BS\n(sd pooled over batch sizes; reasoning solid, pattern dashed)",
        fontsize=9,
    )
    return fig
