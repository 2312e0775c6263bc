"""From the tidy scores and per-item outputs to the statistics tables a paper cites.

Writes, each as CSV, LaTeX (booktabs) and Markdown:

* ``slopes``      per task: slope of score against log10(LR/BS) with its 95% interval, and
                  the best ratio with its interval
* ``split``       per model x stage: reasoning minus pattern mean normalised slope, interval,
                  permutation p-value
* ``invariance``  per task: k = -b/a of score ~ a log LR + b log BS; ratio (k = 1) or
                  LR/sqrt(BS) (k = 0.5), or why it cannot be estimated

and the paper's question itself (:mod:`workflow_scripts.optima`):

* ``optima``      per unit (a task or task group): where its score peaks on log10(LR/BS), with
                  its interval and whether it is a bound (at the grid's edge); once with the
                  excluded cells left out, once with them scored at chance
* ``comparison``  per model x stage, for the pre-registered primary units and the exploratory
                  ones: reasoning minus pattern mean log10 optimum, its bootstrap interval
                  ("these tasks"), the permutation test over units ("these categories"), the
                  mixed-model second opinion, and the same with excluded cells at chance
* ``exclusions``  per ratio: runs in the grid, runs the statistics lost, and why
* ``sizes``       per stage: optima against parameter count, which units change sides,
                  and the power-law exponent with three or more sizes
* ``stability``   per model x stage x ratio x task: the spread of the score and of the final
                  training loss over seeds (:mod:`workflow_scripts.stability`)
* ``flips``       per model x stage x task: items right only at the best low-ratio or only at
                  the best high-ratio cell, the exact McNemar test, and for generative tasks
                  how many wrong answers had no extractable answer (:mod:`workflow_scripts.errors`),
                  with the flipped items themselves in ``flipped_examples.jsonl``

and ``analysis.md``: plain sentences (:mod:`workflow_scripts.prose`: what the grid held fixed,
what was excluded, what each comparison can and cannot claim; the stability and flips
modules word their own) and every table. The numbers come from
:mod:`workflow_scripts.stats`, :mod:`workflow_scripts.optima`, :mod:`workflow_scripts.sensitivity`
and :mod:`workflow_scripts.sizes`. CSV keeps every float at full precision (it reads back as
the same float); LaTeX and Markdown round for reading.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .errors import flip_sentences, flip_tables
from .io import atomic_path, write_jsonl
from .items import load_items
from .optima import optima_tables
from .prose import comparison_sentences, size_sentences, summary_sentences
from .sensitivity import exclusions, impute_excluded
from .sizes import size_table
from .stability import stability_sentences, stability_table
from .stats import ratio_invariance, split_statistic, task_slopes
from .units import resolve_units

N_BOOT = 1000


def _fmt_table(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f":
            out[col] = out[col].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
        elif isinstance(out[col].dtype, pd.Int64Dtype):  # counts that do not apply to a row: blank
            out[col] = out[col].map(lambda v: "" if pd.isna(v) else str(v))
    return out


def _write(df: pd.DataFrame, stem: str, outputs: dict, caption: str) -> str:
    with atomic_path(outputs[f"{stem}_csv"]) as tmp:
        df.to_csv(tmp, index=False)  # every float as repr: it reads back exactly
    shown = _fmt_table(df)
    with atomic_path(outputs[f"{stem}_tex"]) as tmp:
        tmp.write_text(shown.to_latex(index=False, caption=caption, label=f"tab:{stem}", escape=True))
    md = f"**{caption}**\n\n" + shown.to_markdown(index=False) + "\n"
    with atomic_path(outputs[f"{stem}_md"]) as tmp:
        tmp.write_text(md)
    return md


def _parameters(models_csv) -> dict:
    if models_csv is None or not Path(models_csv).exists():
        return {}
    m = pd.read_csv(models_csv)
    return {r["model"]: float(r["parameters"]) for _, r in m.iterrows()}


def write_analysis(
    scores_csv,
    cells: list[dict],
    tasks: dict,
    outputs: dict,
    study: str,
    analysis: dict | None = None,
    models_csv=None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    runs_csv=None,
) -> dict:
    """Every statistics table and analysis.md from the tidy scores (``runs_csv``: the final
    training losses of the stability table; None leaves them empty)."""
    scores = pd.read_csv(scores_csv)
    items = load_items(cells, tasks)
    items = items if len(items) else None
    slopes = task_slopes(scores, items, n_boot=n_boot, seed=seed)
    split = split_statistic(scores, items, n_boot=n_boot, seed=seed)
    inv = ratio_invariance(scores, items, n_boot=n_boot, seed=seed)
    units = resolve_units(tasks, analysis)
    optima, comparison, draws = optima_tables(scores, items, units, n_boot=n_boot, seed=seed)
    imputed = impute_excluded(scores, items)
    optima_i, comparison_i, _ = optima_tables(*imputed, units, n_boot=n_boot, seed=seed, scoring="chance", mixed=False)
    optima_all = pd.concat([optima, optima_i], ignore_index=True)
    comparison_all = pd.concat([comparison, comparison_i], ignore_index=True)
    sizes = size_table(optima, draws, _parameters(models_csv))
    excl = exclusions(scores)
    stability = stability_table(scores, pd.read_csv(runs_csv) if runs_csv is not None else None)
    flips, examples = flip_tables(scores, cells, tasks)
    write_jsonl(examples, outputs["flipped_examples"], sort_keys=False)
    parts = [
        _write(comparison_all, "comparison", outputs, f"Reasoning minus pattern log10 optimum of LR/BS ({study})"),
        _write(optima_all, "optima", outputs, f"Where each task peaks on log10(LR/BS), 95% CI ({study})"),
        _write(excl, "exclusions", outputs, f"Runs excluded from the statistics, per ratio ({study})"),
        _write(sizes, "sizes", outputs, f"Optimum LR/BS against model size ({study})"),
        _write(slopes, "slopes", outputs, f"Per-task slope of score against log10(LR/BS), 95% CI ({study})"),
        _write(split, "split", outputs, f"Reasoning minus pattern split of normalised slopes ({study})"),
        _write(inv, "invariance", outputs, f"Ratio invariance: k = -b/a in score ~ a log LR + b log BS ({study})"),
        _write(stability, "stability", outputs, f"Spread over seeds, pooled over batch sizes, per ratio ({study})"),
        _write(flips, "flips", outputs, f"Items right only at the best low- or high-ratio cell, McNemar ({study})"),
    ]
    headline = comparison_sentences(comparison_all, optima_all) + size_sentences(sizes)
    sentences = summary_sentences(scores, slopes, split, inv, headline)
    sentences += stability_sentences(stability) + flip_sentences(flips)
    text = f"# Analysis of study {study}\n\n" + "\n".join(f"- {s}" for s in sentences) + "\n\n" + "\n\n".join(parts)
    with atomic_path(outputs["summary"]) as tmp:
        tmp.write_text(text)
    print(text, flush=True)
    return {
        "slopes": slopes,
        "split": split,
        "invariance": inv,
        "optima": optima_all,
        "comparison": comparison_all,
        "exclusions": excl,
        "sizes": sizes,
        "stability": stability,
        "flips": flips,
    }
