"""The study's figures (seaborn), each written as PDF (vector) and PNG.

* split:   primary score against LR/BS (log axis), one line per task (mean over seeds and
           batch sizes), reasoning tasks solid and pattern tasks dashed, every cell a point,
           diverged cells a red cross
* heatmap: score over learning rate x effective batch size, one panel per task
* loss:    training loss against examples seen, one line per run
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .io import atomic_path  # noqa: E402
from .numbers import fmt_num  # noqa: E402

CATEGORY_DASHES = {"reasoning": "", "pattern": (4, 2)}


def _save(fig, pdf_path, png_path) -> None:
    fig.tight_layout()
    # fixed metadata so the same data gives the same bytes
    with atomic_path(pdf_path) as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "Creator": None, "Producer": None})
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=150, metadata={"Software": None})
    plt.close(fig)


def _panels(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [(f"{m} / {s}", g) for (m, s), g in df.groupby(["model", "stage"], sort=True)]


def split_figure(scores: pd.DataFrame, study: str):
    prim = scores[scores["primary"]].copy()
    prim["label"] = prim["task"] + " (" + prim["category"] + ")"
    panels = _panels(prim)
    fig, axes = plt.subplots(1, len(panels), figsize=(7.4 * len(panels), 4.2), squeeze=False)
    tasks = sorted(prim["label"].unique(), key=lambda s: (not s.endswith("(reasoning)"), s))
    palette = dict(zip(tasks, sns.color_palette("colorblind", len(tasks))))
    for ax, (title, g) in zip(axes[0], panels):
        mean = g.groupby(["label", "category", "ratio"], as_index=False)["value"].mean()
        sns.lineplot(data=mean, x="ratio", y="value", hue="label", style="category", hue_order=tasks,
                     dashes=CATEGORY_DASHES, markers=False, palette=palette, ax=ax, legend="brief")
        markers = dict(zip(sorted(g["batch_size"].unique()), "oXs^Dv<>P*"))
        sns.scatterplot(data=g, x="ratio", y="value", hue="label", hue_order=tasks, palette=palette,
                        style="batch_size", markers=markers, alpha=0.6, s=28, ax=ax, legend=False)
        bad = g[g["status"] != "ok"].drop_duplicates("run_id")
        if len(bad):
            ax.scatter(bad["ratio"], [0.0] * len(bad), marker="x", color="red", s=60, zorder=5)
            for r in sorted(bad["ratio"].unique()):
                ax.annotate("diverged", (r, 0.0), textcoords="offset points", xytext=(0, 6), ha="center",
                            color="red", fontsize=7)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("learning rate / effective batch size")
        ax.set_ylabel("primary score")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        labels = [{"label": "task", "category": "category"}.get(x, x) for x in labels]
        handles.append(Line2D([], [], linestyle="none"))
        labels.append("run (batch size)")
        for bs, marker in markers.items():
            handles.append(Line2D([], [], marker=marker, color="gray", linestyle="none", alpha=0.6))
            labels.append(f"BS {bs}")
        ax.legend(handles, labels,
                  fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(f"{study}: score against LR/BS — reasoning (solid) vs pattern (dashed); "
                 "points are single runs", fontsize=9)
    return fig


def heatmap_figure(scores: pd.DataFrame, study: str):
    prim = scores[scores["primary"]]
    keys = sorted(prim.groupby(["model", "stage", "task"]).groups)
    ncol = min(4, len(keys))
    nrow = math.ceil(len(keys) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.2 * nrow), squeeze=False)
    for ax, (model, stage, task) in zip(axes.flat, keys):
        g = prim[(prim["model"] == model) & (prim["stage"] == stage) & (prim["task"] == task)]
        piv = g.pivot_table(index="learning_rate", columns="batch_size", values="value", aggfunc="mean",
                            dropna=False)
        piv = piv.sort_index(ascending=False)
        piv.index = [fmt_num(v) for v in piv.index]
        sns.heatmap(piv, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", cbar=False, ax=ax,
                    annot_kws={"fontsize": 7})
        bad = g[g["status"] != "ok"]
        for lr, bs in sorted(set(zip(bad["learning_rate"], bad["batch_size"]))):
            y, x = list(piv.index).index(fmt_num(lr)), list(piv.columns).index(bs)
            ax.text(x + 0.5, y + 0.5, "diverged", ha="center", va="center", color="red", fontsize=7)
        ax.grid(False)
        ax.set_title(f"{task} ({g['category'].iloc[0]})\n{model} / {stage}", fontsize=8)
        ax.set_xlabel("effective batch size")
        ax.set_ylabel("learning rate")
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"{study}: primary score over LR x BS (blank: not in grid; red: diverged, not scored)",
                 fontsize=9)
    return fig


def loss_figure(loss: pd.DataFrame, study: str):
    panels = _panels(loss)
    fig, axes = plt.subplots(1, len(panels), figsize=(7.2 * len(panels), 4.0), squeeze=False)
    for ax, (title, g) in zip(axes[0], panels):
        g = g.assign(ratio_label=g["ratio"].map(fmt_num), bs=g["batch_size"].astype(str))
        order = [fmt_num(r) for r in sorted(g["ratio"].unique())]
        sns.lineplot(data=g, x="examples_seen", y="loss", hue="ratio_label", hue_order=order,
                     style="bs", units="run_id", estimator=None, palette="viridis", ax=ax, linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("training examples seen")
        ax.set_ylabel("training loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles, [{"ratio_label": "LR/BS", "bs": "batch size"}.get(x, x) for x in labels],
                  fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(f"{study}: training loss", fontsize=9)
    return fig


def write_figures(scores_csv, loss_csv, outputs: dict, study: str) -> None:
    sns.set_theme(style="whitegrid", context="paper")
    scores = pd.read_csv(scores_csv)
    loss = pd.read_csv(loss_csv)
    _save(split_figure(scores, study), outputs["split_pdf"], outputs["split_png"])
    _save(heatmap_figure(scores, study), outputs["heatmap_pdf"], outputs["heatmap_png"])
    _save(loss_figure(loss, study), outputs["loss_pdf"], outputs["loss_png"])
    print(f"[plots] wrote {sorted(outputs.values())}", flush=True)
