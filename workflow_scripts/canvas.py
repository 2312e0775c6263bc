"""What every figure of the study stands on: the headless backend, the panel layouts, the
figure that says why it has nothing to show, and the byte-stable PDF + PNG writer."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # headless: set before any figure is made
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .io import atomic_path  # noqa: E402


def save(fig, pdf_path, png_path) -> None:
    fig.tight_layout()
    # fixed metadata so the same data gives the same bytes
    with atomic_path(pdf_path) as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "Creator": None, "Producer": None})
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=150, metadata={"Software": None})
    plt.close(fig)


def stage_panels(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One (title, rows) panel per (model, stage)."""
    return [(f"{m} / {s}", g) for (m, s), g in df.groupby(["model", "stage"], sort=True)]


def task_grid(prim: pd.DataFrame, height: float):
    """One panel per (model, stage, task), four to a row, unused panels hidden."""
    keys = sorted(prim.groupby(["model", "stage", "task"]).groups)
    ncol = min(4, len(keys))
    nrow = math.ceil(len(keys) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, height * nrow), squeeze=False)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    grid = [
        (ax, key, prim[(prim["model"] == key[0]) & (prim["stage"] == key[1]) & (prim["task"] == key[2])])
        for ax, key in zip(axes.flat, keys)
    ]
    return fig, grid


def message_figure(title: str, message: str):
    """A figure that says why it has nothing to show (instead of failing the rule)."""
    fig, ax = plt.subplots(figsize=(6.4, 2.4))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=9)
    fig.suptitle(title, fontsize=9)
    return fig
