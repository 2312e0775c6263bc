"""From the tidy scores and per-item outputs to the statistics tables a paper cites.

Writes, each as CSV, LaTeX (booktabs) and Markdown:

* ``slopes``      per task: slope of score against log10(LR/BS) with its 95% interval, and
                  the best ratio with its interval
* ``split``       per model x stage: reasoning minus pattern mean normalised slope, interval,
                  permutation p-value
* ``invariance``  per task: k = -b/a of score ~ a log LR + b log BS; ratio (k = 1) or
                  LR/sqrt(BS) (k = 0.5), or why it cannot be estimated

and ``analysis.md``: the three tables plus plain sentences (what the grid held fixed, what
was excluded, what the split says). The numbers come from :mod:`workflow_scripts.stats`;
the prose about them lives here. CSV keeps every float at full precision (it reads back as
the same float); LaTeX and Markdown round for reading.
"""

from __future__ import annotations

import pandas as pd

from .io import atomic_path
from .items import load_items
from .stats import ratio_invariance, split_statistic, task_slopes

N_BOOT = 1000


def _fmt_table(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f":
            out[col] = out[col].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
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


def _held_fixed(v: pd.Series, rel_tol: float) -> bool:
    v = v.dropna()
    return len(v) > 0 and v.max() <= v.min() * (1 + rel_tol)


def _median_by_batch_size(batch_size: pd.Series, values: pd.Series) -> str:
    m = values.groupby(batch_size).median()
    return ", ".join(f"bs{int(b)}: {m[b]:g}" for b in m.index if pd.notna(m[b]))


def confounding_note(scores: pd.DataFrame, rel_tol: float = 0.01) -> str:
    """What the grid held fixed when the batch size changed, per model x stage.

    Looks at ``optimizer_steps`` and ``examples_seen`` of each run (one value per run_id;
    all runs, excluded or not, since this is a property of the design). A quantity counts as
    fixed when its largest and smallest values differ by at most ``rel_tol`` (relative).

    * examples fixed, steps vary: a larger batch takes proportionally fewer optimizer
      updates, so batch-size (and, at fixed ratio, LR) effects are confounded with the
      number of updates;
    * steps fixed, examples vary: a larger batch sees more data, so batch-size effects are
      confounded with the amount of training data;
    * neither fixed, or one batch size only, or the columns missing: said as such.

    Returns one line per model x stage, ``"model/stage: ..."``.
    """
    need = {"model", "stage", "run_id", "batch_size"}
    if need - set(scores.columns):
        raise KeyError(f"scores lacks columns {sorted(need - set(scores.columns))}")
    lines = []
    runs = scores.drop_duplicates("run_id")
    for (model, stage), g in runs.groupby(["model", "stage"], sort=True):
        head = f"{model}/{stage}: "
        bss = sorted(pd.to_numeric(g["batch_size"], errors="coerce").dropna().unique())
        cols = {}
        for col in ("optimizer_steps", "examples_seen"):
            if col not in g.columns:
                cols[col] = None
                continue
            v = pd.to_numeric(g[col], errors="coerce")
            cols[col] = None if v.isna().all() else v
        if cols["optimizer_steps"] is None or cols["examples_seen"] is None:
            lines.append(head + "cannot tell what was held fixed: optimizer_steps or examples_seen missing")
            continue
        steps, ex = cols["optimizer_steps"], cols["examples_seen"]
        steps_fixed, ex_fixed = _held_fixed(steps, rel_tol), _held_fixed(ex, rel_tol)
        by_bs = {col: _median_by_batch_size(g["batch_size"], v) for col, v in cols.items()}
        if len(bss) < 2:
            lines.append(
                head + f"one batch size ({', '.join(f'{b:g}' for b in bss)}): steps and examples do not "
                "vary with batch size, so there is no batch-size confound, but batch-size effects "
                "cannot be studied either"
            )
        elif ex_fixed and not steps_fixed:
            lines.append(
                head + f"examples_seen held fixed ({ex.median():g}); optimizer_steps vary with batch size "
                f"({by_bs['optimizer_steps']}): larger batches take fewer updates, so batch-size effects "
                "(and k in ratio_invariance) are confounded with the number of optimizer steps"
            )
        elif steps_fixed and not ex_fixed:
            lines.append(
                head + f"optimizer_steps held fixed ({steps.median():g}); examples_seen vary with batch size "
                f"({by_bs['examples_seen']}): larger batches see more data, so batch-size effects are "
                "confounded with the amount of training data"
            )
        elif steps_fixed and ex_fixed:
            lines.append(
                head + "both optimizer_steps and examples_seen are constant although the batch size "
                "varies: check how they were recorded"
            )
        else:
            lines.append(
                head + f"neither held fixed: optimizer_steps ({by_bs['optimizer_steps']}) and "
                f"examples_seen ({by_bs['examples_seen']}) both vary"
            )
        n_bad = 0
        if "status" in g.columns:
            n_bad = int((g["status"].astype(str) != "ok").sum())
        if n_bad:
            lines[-1] += f"; {n_bad} runs not ok (excluded from the statistics)"
    return "\n".join(lines)


def summary_sentences(
    scores: pd.DataFrame, slopes: pd.DataFrame, split: pd.DataFrame, invariance: pd.DataFrame
) -> list[str]:
    prim = scores[scores["primary"]]
    out = confounding_note(scores).splitlines()  # one bullet per model x stage
    bad = prim[prim["status"] != "ok"]["run_id"].unique() if "status" in prim else []
    out.append(
        f"{len(prim['run_id'].unique())} runs; {len(bad)} excluded (diverged or missing), never filled in"
        + (f": {', '.join(sorted(bad))}." if len(bad) else ".")
    )
    for _, r in split.iterrows():
        if pd.isna(r["split"]):
            out.append(f"{r['model']} / {r['stage']}: the split is not estimable (too few cells or tasks).")
            continue
        verdict = (
            "higher LR/BS favours reasoning over pattern tasks"
            if r["split_lo"] > 0
            else "higher LR/BS favours pattern over reasoning tasks"
            if r["split_hi"] < 0
            else "no split can be claimed: the interval covers 0"
        )
        out.append(
            f"{r['model']} / {r['stage']}: split (reasoning - pattern normalised slope) = "
            f"{r['split']:.3g} [95% CI {r['split_lo']:.3g}, {r['split_hi']:.3g}], permutation p = "
            f"{r['p_value']:.3g} over {int(r['n_perm'])} labelings (smallest possible p {r['p_min']:.3g}); "
            f"{verdict}. Resampled: {r['resampled']}."
        )
    counts = invariance["verdict"].value_counts().to_dict()
    out.append("Ratio invariance per task: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ".")
    return out


def write_analysis(
    scores_csv, cells: list[dict], tasks: dict, outputs: dict, study: str, n_boot: int = N_BOOT, seed: int = 0
) -> dict:
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
    text = f"# Analysis of study {study}\n\n" + "\n".join(f"- {s}" for s in sentences) + "\n\n" + "\n\n".join(parts)
    with atomic_path(outputs["summary"]) as tmp:
        tmp.write_text(text)
    print(text, flush=True)
    return {"slopes": slopes, "split": split, "invariance": inv}
