"""The figures of the paper's question (tables from :mod:`workflow_scripts.optima`).

* optima: each unit's optimum LR/BS with its 95% interval, one panel per model x stage, the
          pre-registered primary units above the exploratory ones; a triangle marks an optimum
          at the grid's edge (a bound: it points to where the true optimum may lie), a hollow
          marker the optimum with excluded cells scored at chance
* sizes:  each category's (thick) and unit's (thin) optimum against parameter count, per stage
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .canvas import message_figure

EDGE_MARKERS = {"low": "<", "high": ">", "": "o"}
ROLES = ("primary", "exploratory")


def _colors() -> dict:
    return dict(zip(["reasoning", "pattern"], sns.color_palette("colorblind", 2)))


def _panel_title(model: str, stage: str, comparison: pd.DataFrame) -> str:
    title = f"{model} / {stage}"
    c = comparison[
        (comparison["model"] == model) & (comparison["stage"] == stage) & (comparison["scoring"] == "excluded")
    ]
    for _, r in c.iterrows():
        if not np.isfinite(r["diff"]):
            continue
        title += (
            f"\n{r['set']}: reasoning - pattern log10 optimum {r['diff']:.2f} [{r['diff_lo']:.2f}, "
            f"{r['diff_hi']:.2f}] (these tasks)\nas categories: p = {r['p_value']:.2g} (smallest possible "
            f"{r['p_min']:.2g})"
        )
    return title


def optima_figure(optima: pd.DataFrame, comparison: pd.DataFrame, study: str):
    if optima.empty:
        return message_figure(f"{study}: optima", "No unit has an estimable optimum (fewer than two ratios?).")
    main = optima[optima["scoring"] == "excluded"]
    chance = optima[optima["scoring"] != "excluded"].set_index(["model", "stage", "unit"])
    groups = list(dict.fromkeys(zip(main["model"], main["stage"])))
    n_units = main.groupby(["model", "stage"]).size().max()
    n_sets = comparison.groupby(["model", "stage"]).size().max() if len(comparison) else 0
    height = 1.4 + 0.42 * n_units + 0.35 * n_sets
    fig, axes = plt.subplots(1, len(groups), figsize=(6.2 * len(groups), height), squeeze=False)
    colors = _colors()
    for ax, (model, stage) in zip(axes[0], groups):
        g = main[(main["model"] == model) & (main["stage"] == stage)]
        g = g.assign(_role=g["role"].map({r: i for i, r in enumerate(ROLES)}))
        g = g.sort_values(["_role", "category", "unit"], ascending=[True, False, True], kind="stable")
        y = np.arange(len(g))[::-1].astype(float)
        ax.axvspan(g["grid_lo"].min(), g["grid_hi"].max(), color="0.93", zorder=0)
        for yi, (_, r) in zip(y, g.iterrows()):
            color = colors.get(r["category"], "gray")
            if np.isfinite(r["opt_ratio_lo"]):
                ax.plot([r["opt_ratio_lo"], r["opt_ratio_hi"]], [yi, yi], color=color, linewidth=1.6)
            ax.plot(r["opt_ratio"], yi, EDGE_MARKERS.get(r["edge"], "o"), color=color, markersize=7)
            key = (model, stage, r["unit"])
            if r["n_excluded"] and key in chance.index and np.isfinite(chance.loc[key, "opt_ratio"]):
                ax.plot(chance.loc[key, "opt_ratio"], yi - 0.25, "o", mfc="none", color=color, markersize=5)
        roles = list(g["role"])
        if "primary" in roles and "exploratory" in roles:
            cut = y[roles.index("exploratory")] + 0.5
            ax.axhline(cut, color="black", linewidth=0.6, linestyle=":")
        ax.set_yticks(y)
        ax.set_yticklabels([f"{u} ({c}, {r})" for u, c, r in zip(g["unit"], g["category"], g["role"])], fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("LR/BS at which the score peaks (95% CI); shaded: the grid")
        ax.set_title(_panel_title(model, stage, comparison), fontsize=7)
    fig.suptitle(
        f"{study}: where each task peaks (triangle: at the grid's edge, a bound; hollow: excluded cells at chance)",
        fontsize=9,
    )
    return fig


def sizes_figure(sizes: pd.DataFrame, study: str):
    if sizes.empty:
        return message_figure(
            f"{study}: optimum against model size",
            "One model size (or parameter counts unknown): nothing to compare across sizes.\n"
            "Add models of other sizes to `models:`, each with its own grid (models[].stages).",
        )
    stages = list(dict.fromkeys(sizes["stage"]))
    fig, axes = plt.subplots(1, len(stages), figsize=(5.6 * len(stages), 4.0), squeeze=False)
    colors = _colors()
    for ax, stage in zip(axes[0], stages):
        g = sizes[sizes["stage"] == stage]
        for (level, name), s in g.groupby(["level", "name"], sort=False):
            s = s.sort_values("parameters")
            color = colors.get(s["category"].iloc[0], "gray")
            ratio = 10 ** s["log10_opt"]
            if level == "category":
                lo, hi = 10 ** s["log10_opt_lo"], 10 ** s["log10_opt_hi"]
                ax.errorbar(
                    s["parameters"],
                    ratio,
                    yerr=[(ratio - lo).clip(lower=0), (hi - ratio).clip(lower=0)],
                    color=color,
                    linewidth=2.2,
                    marker="o",
                    capsize=3,
                    label=name
                    + (
                        f" (alpha {s['alpha'].iloc[0]:.2f} [{s['alpha_lo'].iloc[0]:.2f}, {s['alpha_hi'].iloc[0]:.2f}])"
                        if np.isfinite(s["alpha"].iloc[0])
                        else ""
                    ),
                )
            else:
                style = "--" if s["changes_side"].iloc[0] else "-"
                ax.plot(s["parameters"], ratio, style, color=color, linewidth=0.8, alpha=0.6, marker=".")
                ax.annotate(name, (s["parameters"].iloc[-1], ratio.iloc[-1]), fontsize=6, color=color)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel("optimum LR/BS (95% CI)")
        ax.set_title(f"{stage}: thick = category mean, thin = unit (dashed: changes side)", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(f"{study}: optimum LR/BS against model size (these tasks)", fontsize=9)
    return fig
