"""The study's figures (seaborn), each written as PDF (vector) and PNG.

* split:   primary score against LR/BS (log axis), one line per task (mean over seeds and
           batch sizes), reasoning tasks solid and pattern tasks dashed, every cell a point,
           diverged cells a red cross
* heatmap: score over learning rate x effective batch size, one panel per task
* loss:    training loss against examples seen, one line per run
* optima, sizes: where each task peaks, and against model size (optima_figures.py; the headline)
* forest:  per-task slope against log10(LR/BS) with 95% intervals, by category (secondary)
* iso_ratio: score against batch size at a fixed ratio
* reference: our best cells beside the published SmolTulu scores (where tasks match),
           drawn by reference_figure.py
* stability: the spread of score and final loss across seeds, per ratio (stability_figure.py)

Panel layouts, the headless backend and the byte-stable writer are canvas.py's.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from .canvas import message_figure, save, stage_panels, task_grid
from .numbers import fmt_num
from .optima_figures import optima_figure, sizes_figure
from .reference_figure import reference_figure
from .stability_figure import stability_figure

CATEGORY_DASHES = {"reasoning": "", "pattern": (4, 2)}


def split_figure(scores: pd.DataFrame, study: str):
    prim = scores[scores["primary"]].copy()
    prim["label"] = prim["task"] + " (" + prim["category"] + ")"
    panels = stage_panels(prim)
    fig, axes = plt.subplots(1, len(panels), figsize=(7.4 * len(panels), 4.2), squeeze=False)
    tasks = sorted(prim["label"].unique(), key=lambda s: (not s.endswith("(reasoning)"), s))
    palette = dict(zip(tasks, sns.color_palette("colorblind", len(tasks))))
    for ax, (title, g) in zip(axes[0], panels):
        ok = g[g["status"] == "ok"] if "status" in g else g
        mean = ok.groupby(["label", "category", "ratio"], as_index=False).agg(
            value=("value", "mean"), se=("stderr", lambda s: (s**2).sum() ** 0.5 / max(len(s), 1))
        )
        for label, band in mean.groupby("label"):
            ax.fill_between(
                band["ratio"],
                (band["value"] - 1.96 * band["se"]).clip(0, 1),
                (band["value"] + 1.96 * band["se"]).clip(0, 1),
                color=palette[label],
                alpha=0.15,
                linewidth=0,
            )
        sns.lineplot(
            data=mean,
            x="ratio",
            y="value",
            hue="label",
            style="category",
            hue_order=tasks,
            dashes=CATEGORY_DASHES,
            markers=False,
            palette=palette,
            ax=ax,
            legend="brief",
        )
        markers = dict(zip(sorted(g["batch_size"].unique()), "oXs^Dv<>P*"))
        sns.scatterplot(
            data=g,
            x="ratio",
            y="value",
            hue="label",
            hue_order=tasks,
            palette=palette,
            style="batch_size",
            markers=markers,
            alpha=0.6,
            s=28,
            ax=ax,
            legend=False,
        )
        bad = g[g["status"] != "ok"].drop_duplicates("run_id")
        if len(bad):
            ax.scatter(bad["ratio"], [0.0] * len(bad), marker="x", color="red", s=60, zorder=5)
            for r in sorted(bad["ratio"].unique()):
                ax.annotate(
                    "diverged",
                    (r, 0.0),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    color="red",
                    fontsize=7,
                )
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
        ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(
        f"{study}: score against LR/BS — reasoning (solid) vs pattern (dashed); "
        "bands: 95% item-level CI of the mean; points are single runs",
        fontsize=9,
    )
    return fig


def heatmap_figure(scores: pd.DataFrame, study: str):
    prim = scores[scores["primary"]]
    fig, panels = task_grid(prim, 3.2)
    for ax, (model, stage, task), g in panels:
        piv = g.pivot_table(index="learning_rate", columns="batch_size", values="value", aggfunc="mean", dropna=False)
        piv = piv.sort_index(ascending=False)
        piv.index = [fmt_num(v) for v in piv.index]
        sns.heatmap(
            piv, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", cbar=False, ax=ax, annot_kws={"fontsize": 7}
        )
        bad = g[g["status"] != "ok"]
        for lr, bs in sorted(set(zip(bad["learning_rate"], bad["batch_size"]))):
            y, x = list(piv.index).index(fmt_num(lr)), list(piv.columns).index(bs)
            ax.text(x + 0.5, y + 0.5, "diverged", ha="center", va="center", color="red", fontsize=7)
        ax.grid(False)
        ax.set_title(f"{task} ({g['category'].iloc[0]})\n{model} / {stage}", fontsize=8)
        ax.set_xlabel("effective batch size")
        ax.set_ylabel("learning rate")
    fig.suptitle(f"{study}: primary score over LR x BS (blank: not in grid; red: diverged, not scored)", fontsize=9)
    return fig


def _ratio_lines(g: pd.DataFrame, ax, x: str, y: str, **style) -> None:
    """One viridis line per LR/BS ratio, in ratio order, labelled as fmt_num writes the ratio."""
    g = g.assign(ratio_label=g["ratio"].map(fmt_num))
    order = [fmt_num(r) for r in sorted(g["ratio"].unique())]
    sns.lineplot(data=g, x=x, y=y, hue="ratio_label", hue_order=order, palette="viridis", ax=ax, **style)


def loss_figure(loss: pd.DataFrame, study: str):
    panels = stage_panels(loss)
    fig, axes = plt.subplots(1, len(panels), figsize=(7.2 * len(panels), 4.0), squeeze=False)
    for ax, (title, g) in zip(axes[0], panels):
        g = g.assign(bs=g["batch_size"].astype(str))
        _ratio_lines(g, ax, "examples_seen", "loss", style="bs", units="run_id", estimator=None, linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("training examples seen")
        ax.set_ylabel("training loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(
            handles,
            [{"ratio_label": "LR/BS", "bs": "batch size"}.get(x, x) for x in labels],
            fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            frameon=False,
        )
    fig.suptitle(f"{study}: training loss", fontsize=9)
    return fig


def forest_figure(slopes: pd.DataFrame, split: pd.DataFrame, study: str):
    """Per-task slope of score against log10(LR/BS) with 95% intervals, grouped by category."""
    groups = sorted(slopes.groupby(["model", "stage"]).groups)
    fig, axes = plt.subplots(
        1, len(groups), figsize=(6.4 * len(groups), 0.6 + 0.45 * slopes["task"].nunique() + 1.2), squeeze=False
    )
    colors = dict(zip(["reasoning", "pattern"], sns.color_palette("colorblind", 2)))
    for ax, (model, stage) in zip(axes[0], groups):
        g = slopes[(slopes["model"] == model) & (slopes["stage"] == stage)]
        g = g.sort_values(["category", "slope"], ascending=[False, True]).reset_index(drop=True)
        y = list(range(len(g)))[::-1]
        for yi, (_, r) in zip(y, g.iterrows()):
            lo, hi = r["slope"] - r["slope_lo"], r["slope_hi"] - r["slope"]
            ax.errorbar(
                r["slope"],
                yi,
                xerr=[[lo], [hi]] if pd.notna(lo) else None,
                fmt="o",
                color=colors.get(r["category"], "gray"),
                capsize=3,
            )
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels([f"{t} ({c})" for t, c in zip(g["task"], g["category"])])
        ax.set_xlabel("slope of score per decade of LR/BS (95% CI)")
        sp = split[(split["model"] == model) & (split["stage"] == stage)]
        title = f"{model} / {stage}"
        if len(sp) and pd.notna(sp["split"].iloc[0]):
            r = sp.iloc[0]
            title += (
                f"\nsplit (reasoning - pattern, normalised) {r['split']:.2f} "
                f"[{r['split_lo']:.2f}, {r['split_hi']:.2f}] (these tasks); categories: p = {r['p_value']:.2g} "
                f"(p_min {r['p_min']:.2g})"
            )
        ax.set_title(title, fontsize=8)
    fig.suptitle(
        f"{study}: how each task's score moves with LR/BS (positive: higher ratio helps); "
        "CI: these tasks, p: tasks as units",
        fontsize=9,
    )
    return fig


def iso_ratio_figure(scores: pd.DataFrame, study: str):
    """Score against batch size at a fixed ratio: flat lines mean the ratio is the invariant."""
    prim = scores[scores["primary"] & (scores.get("status", "ok") == "ok")]
    multi = prim.groupby(["model", "stage", "ratio"])["batch_size"].nunique()
    keep = multi[multi > 1].reset_index()[["model", "stage", "ratio"]]
    prim = prim.merge(keep, on=["model", "stage", "ratio"])
    if prim.empty:
        return message_figure(
            f"{study}: iso-ratio",
            "No ratio was run at two or more batch sizes,\n"
            "so score at a fixed LR/BS cannot be compared across batch sizes.\n"
            "Give stages.<stage>.grid several batch_sizes.",
        )
    fig, panels = task_grid(prim, 3.0)
    for ax, (model, stage, task), g in panels:
        _ratio_lines(g, ax, "batch_size", "value", marker="o", errorbar=None)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{task} ({g['category'].iloc[0]})\n{model} / {stage}", fontsize=8)
        ax.set_xlabel("effective batch size")
        ax.set_ylabel("primary score")
        ax.legend(title="LR/BS", fontsize=6, title_fontsize=7)
    fig.suptitle(f"{study}: score against batch size at fixed LR/BS (flat = ratio is what matters)", fontsize=9)
    return fig


def write_figures(
    scores_csv,
    loss_csv,
    outputs: dict,
    study: str,
    slopes_csv=None,
    split_csv=None,
    optima_csv=None,
    comparison_csv=None,
    sizes_csv=None,
    published_csv=None,
    reference_csv=None,
    stability_csv=None,
) -> None:
    sns.set_theme(style="whitegrid", context="paper", palette="colorblind")
    scores = pd.read_csv(scores_csv)
    loss = pd.read_csv(loss_csv)
    save(split_figure(scores, study), outputs["split_pdf"], outputs["split_png"])
    save(heatmap_figure(scores, study), outputs["heatmap_pdf"], outputs["heatmap_png"])
    save(loss_figure(loss, study), outputs["loss_pdf"], outputs["loss_png"])
    save(iso_ratio_figure(scores, study), outputs["iso_ratio_pdf"], outputs["iso_ratio_png"])
    if slopes_csv is not None:
        save(
            forest_figure(pd.read_csv(slopes_csv), pd.read_csv(split_csv), study),
            outputs["forest_pdf"],
            outputs["forest_png"],
        )
    if optima_csv is not None:
        optima, comparison = pd.read_csv(optima_csv), pd.read_csv(comparison_csv)
        save(optima_figure(optima, comparison, study), outputs["optima_pdf"], outputs["optima_png"])
        save(sizes_figure(pd.read_csv(sizes_csv), study), outputs["sizes_pdf"], outputs["sizes_png"])
    if stability_csv is not None:
        save(stability_figure(pd.read_csv(stability_csv), study), outputs["stability_pdf"], outputs["stability_png"])
    published = pd.read_csv(published_csv) if published_csv else None
    named = pd.read_csv(reference_csv) if reference_csv else None
    save(reference_figure(scores, published, study, named), outputs["reference_pdf"], outputs["reference_png"])
    print(f"[plots] wrote {sorted(outputs.values())}", flush=True)
