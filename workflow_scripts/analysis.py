"""From the tidy scores and per-item outputs to the statistics tables a paper cites.

Writes, each as CSV, LaTeX (booktabs) and Markdown:

* ``slopes``      per task: slope of score against log10(LR/BS) with its 95% interval, and
                  the best ratio with its interval
* ``split``       per model x stage: reasoning minus pattern mean normalised slope, interval,
                  permutation p-value
* ``invariance``  per task: k = -b/a of score ~ a log LR + b log BS; ratio (k = 1) or
                  LR/sqrt(BS) (k = 0.5), or why it cannot be estimated

and ``analysis.md``: the three tables plus plain sentences (what the grid held fixed, what
was excluded, what the split says).
"""

from __future__ import annotations

import pandas as pd

from .io import atomic_path
from .items import load_items
from .stats import confounding_note, ratio_invariance, split_statistic, task_slopes

N_BOOT = 1000


def _fmt_table(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f":
            out[col] = out[col].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    return out


def _write(df: pd.DataFrame, stem: str, outputs: dict, caption: str) -> str:
    with atomic_path(outputs[f"{stem}_csv"]) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    shown = _fmt_table(df)
    with atomic_path(outputs[f"{stem}_tex"]) as tmp:
        tmp.write_text(shown.to_latex(index=False, caption=caption, label=f"tab:{stem}", escape=True))
    md = f"**{caption}**\n\n" + shown.to_markdown(index=False) + "\n"
    with atomic_path(outputs[f"{stem}_md"]) as tmp:
        tmp.write_text(md)
    return md


def summary_sentences(scores: pd.DataFrame, slopes: pd.DataFrame, split: pd.DataFrame,
                      invariance: pd.DataFrame) -> list[str]:
    prim = scores[scores["primary"]]
    out = confounding_note(scores).splitlines()  # one bullet per model x stage
    bad = prim[prim["status"] != "ok"]["run_id"].unique() if "status" in prim else []
    out.append(f"{len(prim['run_id'].unique())} runs; {len(bad)} excluded (diverged or missing), never filled in"
               + (f": {', '.join(sorted(bad))}." if len(bad) else "."))
    for _, r in split.iterrows():
        if pd.isna(r["split"]):
            out.append(f"{r['model']} / {r['stage']}: the split is not estimable (too few cells or tasks).")
            continue
        verdict = ("higher LR/BS favours reasoning over pattern tasks" if r["split_lo"] > 0 else
                   "higher LR/BS favours pattern over reasoning tasks" if r["split_hi"] < 0 else
                   "no split can be claimed: the interval covers 0")
        out.append(f"{r['model']} / {r['stage']}: split (reasoning - pattern normalised slope) = "
                   f"{r['split']:.3g} [95% CI {r['split_lo']:.3g}, {r['split_hi']:.3g}], permutation p = "
                   f"{r['p_value']:.3g} over {int(r['n_perm'])} labelings (smallest possible p {r['p_min']:.3g}); "
                   f"{verdict}. Resampled: {r['resampled']}.")
    counts = invariance["verdict"].value_counts().to_dict()
    out.append("Ratio invariance per task: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ".")
    return out


def write_analysis(scores_csv, cells: list[dict], tasks: dict, outputs: dict, study: str,
                   n_boot: int = N_BOOT, seed: int = 0) -> dict:
    scores = pd.read_csv(scores_csv)
    items = load_items(cells, tasks)
    items = items if len(items) else None
    slopes = task_slopes(scores, items, n_boot=n_boot, seed=seed)
    split = split_statistic(scores, items, n_boot=n_boot, seed=seed)
    inv = ratio_invariance(scores, items, n_boot=n_boot, seed=seed)
    parts = [
        _write(slopes, "slopes", outputs, f"Per-task slope of score against log10(LR/BS), 95% CI ({study})"),
        _write(split, "split", outputs, f"Reasoning minus pattern split of normalised slopes ({study})"),
        _write(inv, "invariance", outputs, f"Ratio invariance: k = -b/a in score ~ a log LR + b log BS ({study})"),
    ]
    sentences = summary_sentences(scores, slopes, split, inv)
    text = (f"# Analysis of study {study}\n\n" + "\n".join(f"- {s}" for s in sentences) + "\n\n"
            + "\n\n".join(parts))
    with atomic_path(outputs["summary"]) as tmp:
        tmp.write_text(text)
    print(text, flush=True)
    return {"slopes": slopes, "split": split, "invariance": inv}
