"""The study's tables for reading: LaTeX and Markdown, rounded (the CSV tables aggregate.py
writes keep every float exactly). Each table's caption is written here, once for both forms."""

from __future__ import annotations

import pandas as pd


def markdown_table(df: pd.DataFrame, caption: str) -> str:
    return f"**{caption}**\n\n" + df.to_markdown(index=False, floatfmt=".4g") + "\n"


def pivot_latex(piv: pd.DataFrame, study: str) -> str:
    body = piv.drop(columns=["model", "stage", "metric"]).copy()
    body = body.rename(columns={"category": "Category", "task": "Task", "cells": "Cells", "excluded": "Excluded"})
    caption = (
        f"Primary score by task and LR/BS ratio (study {study}); mean over seeds and "
        "effective batch sizes. Cells: runs averaged; excluded: runs that diverged."
    )
    return body.to_latex(
        index=False, float_format="%.3f", na_rep="--", caption=caption, label=f"tab:{study}-pivot", escape=True
    )


def pivot_markdown(piv: pd.DataFrame, study: str) -> str:
    return markdown_table(piv, f"Primary score by task and LR/BS ratio ({study})")


def _cells_caption(study: str) -> str:
    return f"Primary score of every cell ({study}); empty: not scored (diverged)"


def cells_latex(wide: pd.DataFrame, study: str) -> str:
    return wide.drop(columns=["model", "stage"]).to_latex(
        index=False, float_format="%.3g", na_rep="--", caption=_cells_caption(study), label=f"tab:{study}-cells"
    )


def cells_markdown(wide: pd.DataFrame, study: str) -> str:
    return markdown_table(wide, _cells_caption(study))


def _reference_caption(study: str) -> str:
    return f"Named cells of {study} beside the published SmolTulu scores (%); published: lighteval, ours: lm-eval"


def reference_latex(ref: pd.DataFrame, study: str) -> str:
    return ref.to_latex(
        index=False,
        float_format="%.1f",
        na_rep="--",
        caption=_reference_caption(study),
        label=f"tab:{study}-reference",
        escape=True,
    )


def reference_markdown(ref: pd.DataFrame, study: str) -> str:
    caption = _reference_caption(study)
    if not len(ref):
        return f"**{caption}**\n\nNo cell of this study is named in `reference:` of its config.\n"
    return markdown_table(ref, caption)
