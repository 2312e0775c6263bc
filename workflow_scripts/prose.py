"""The sentences of analysis.md: every claim says which inference it rests on.

"On these tasks" rests on the item and seed bootstrap, which treats the tasks as fixed; "as
categories" rests on the permutation test with tasks as the sampled units. A sentence never
makes the second claim from the first, and when the design cannot reach p < 0.05 as
categories it says so and how many tasks it would need. The numbers come from
:mod:`workflow_scripts.stats`, :mod:`workflow_scripts.optima` and :mod:`workflow_scripts.sizes`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .optima import ALPHA, interval_side, tasks_needed


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
    scores: pd.DataFrame,
    slopes: pd.DataFrame,
    split: pd.DataFrame,
    invariance: pd.DataFrame,
    headline: list[str] = (),
) -> list[str]:
    """The bullets of analysis.md: what the grid held fixed, what was excluded, then
    ``headline`` (the comparison of optima), then the slope split and ratio invariance."""
    prim = scores[scores["primary"]]
    out = confounding_note(scores).splitlines()  # one bullet per model x stage
    bad = prim[prim["status"] != "ok"]["run_id"].unique() if "status" in prim else []
    out.append(
        f"{len(prim['run_id'].unique())} runs; {len(bad)} excluded (diverged or missing), never filled in"
        + (f": {', '.join(sorted(bad))}." if len(bad) else ".")
    )
    out.extend(headline)
    for _, r in split.iterrows():
        if pd.isna(r["split"]):
            out.append(f"{r['model']} / {r['stage']}: the split is not estimable (too few cells or tasks).")
            continue
        verdict = (
            "on these tasks, higher LR/BS raises the reasoning tasks' scores more than the pattern tasks'"
            if r["split_lo"] > 0
            else "on these tasks, higher LR/BS raises the pattern tasks' scores more than the reasoning tasks'"
            if r["split_hi"] < 0
            else "on these tasks, no difference in slope can be claimed: the interval covers 0"
        )
        out.append(
            f"{r['model']} / {r['stage']} (secondary summary, linear slopes over the whole grid): split "
            f"(reasoning - pattern normalised slope) = {r['split']:.3g} [95% CI {r['split_lo']:.3g}, "
            f"{r['split_hi']:.3g}] ({_resampled(r['resampled'])}); {verdict}. "
            + _category_sentence(r["p_value"], r["n_perm"], r["p_min"])
        )
    counts = invariance["verdict"].value_counts().to_dict()
    out.append("Ratio invariance per task: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ".")
    return out


def _resampled(what: str) -> str:
    return {
        "items+seeds": "items and seeds resampled",
        "items": "items resampled; one seed, so training noise is not in the interval",
        "seeds": "seeds resampled; no per-item scores",
        "runs-within-ratio": "runs resampled within each ratio",
    }.get(what, "nothing to resample: no interval")


def _category_sentence(p: float, n_perm: float, p_min: float) -> str:
    """What the permutation test over tasks (the units) says about the categories themselves."""
    if not np.isfinite(p):
        return "As categories (tasks as units): not testable."
    head = f"As categories (tasks as units, permutation over {int(n_perm)} labelings): p = {p:.3g}"
    if p_min > ALPHA:
        return (
            f"{head}; the smallest p this design allows is {p_min:.3g}, so it cannot support a claim about "
            f"reasoning and pattern tasks in general (that needs at least {tasks_needed()} tasks per category)."
        )
    if p <= ALPHA:
        return f"{head}: the categories differ, with tasks as the sampled units."
    return f"{head}: no difference between the categories can be claimed."


def _fmt_log(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:.2f} (LR/BS {10**v:.3g})"


def comparison_sentences(comparison: pd.DataFrame, optima: pd.DataFrame) -> list[str]:
    """The primary (pre-registered) and exploratory comparisons of optima, each saying which
    inference it rests on; the chance-scored sensitivity rows beside the main ones."""
    out = []
    main = comparison[comparison["scoring"] == "excluded"]
    if not (main["set"] == "primary").any():
        out.append(
            "No primary comparison was pre-registered (analysis.primary in the config): every comparison "
            "below is exploratory."
        )
    for _, r in main.iterrows():
        key = (r["model"], r["stage"], r["set"])
        members = optima[
            (optima["model"] == key[0])
            & (optima["stage"] == key[1])
            & (optima["role"] == key[2])
            & (optima["scoring"] == "excluded")
        ]
        names = {c: ", ".join(members.loc[members["category"] == c, "unit"]) for c in ("reasoning", "pattern")}
        head = f"{key[0]} / {key[1]}, {'primary (pre-registered)' if key[2] == 'primary' else 'exploratory'}"
        head += f" [reasoning: {names['reasoning'] or '-'}; pattern: {names['pattern'] or '-'}]"
        if not np.isfinite(r["diff"]):
            out.append(f"{head}: the optima cannot be compared (a category has no estimable optimum).")
            continue
        verdict = _verdict_words(r["diff_lo"], r["diff_hi"])
        text = (
            f"{head}: mean log10 optimum of LR/BS {_fmt_log(r['reasoning_opt'])} "
            f"[{r['reasoning_opt_lo']:.3g}, {r['reasoning_opt_hi']:.3g}] for reasoning, "
            f"{_fmt_log(r['pattern_opt'])} [{r['pattern_opt_lo']:.3g}, {r['pattern_opt_hi']:.3g}] for pattern; "
            f"difference {r['diff']:.3g} "
            f"[95% CI {r['diff_lo']:.3g}, {r['diff_hi']:.3g}]. On these tasks ({_resampled(r['resampled'])}): "
            f"{verdict}. " + _category_sentence(r["p_value"], r["n_perm"], r["p_min"])
        )
        if r["bound"] == "mixed":
            text += (
                " Some units peak at opposite edges of the grid, so the difference is neither an estimate nor "
                "a one-sided bound: widen the grid."
            )
        elif r["bound"]:
            text += (
                f" Some units peak at the grid's edge, so the difference is an {r['bound']} bound, not an "
                "estimate: widen the grid."
            )
        if np.isfinite(r["mixed_diff"]):
            text += (
                f" Mixed model (runs as random effects): difference {r['mixed_diff']:.3g} "
                f"[{r['mixed_lo']:.3g}, {r['mixed_hi']:.3g}]"
                + (
                    ", which agrees with the bootstrap."
                    if r["agree"] == "yes"
                    else ", which DISAGREES with the bootstrap: read both with care."
                    if r["agree"] == "no"
                    else "."
                )
            )
        elif r["mixed_note"]:
            text += f" Mixed model: not estimated ({r['mixed_note']})."
        sens = comparison[
            (comparison["scoring"] != "excluded")
            & (comparison["model"] == key[0])
            & (comparison["stage"] == key[1])
            & (comparison["set"] == key[2])
        ]
        if int(r["n_excluded"]) == 0:
            text += " No cell was excluded, so scoring excluded cells at chance changes nothing."
        elif len(sens):
            s = sens.iloc[0]
            text += (
                f" With the excluded cells scored at chance instead of left out: difference {s['diff']:.3g} "
                f"[{s['diff_lo']:.3g}, {s['diff_hi']:.3g}] ({_verdict_words(s['diff_lo'], s['diff_hi'])})."
            )
        out.append(text)
    return out


def _verdict_words(lo: float, hi: float) -> str:
    return {
        "higher": "the reasoning units peak at a higher LR/BS than the pattern units",
        "lower": "the reasoning units peak at a lower LR/BS than the pattern units",
        "unclear": "no difference in where they peak can be claimed (the interval covers 0)",
    }.get(interval_side(lo, hi), "no interval")


def size_sentences(sizes: pd.DataFrame) -> list[str]:
    out = []
    for stage, g in sizes.groupby("stage", sort=False):
        models = list(dict.fromkeys(g["model"]))
        cats = g[g["level"] == "category"]
        parts = []
        for cat, c in cats.groupby("name", sort=False):
            line = f"{cat}: " + ", ".join(f"{m} {_fmt_log(v)}" for m, v in zip(c["model"], c["log10_opt"]))
            if np.isfinite(c["alpha"].iloc[0]):
                line += (
                    f"; optimum ~ N^alpha with alpha = {c['alpha'].iloc[0]:.3g} "
                    f"[{c['alpha_lo'].iloc[0]:.3g}, {c['alpha_hi'].iloc[0]:.3g}]"
                )
            parts.append(line)
        units = g[(g["level"] == "unit") & g["changes_side"]]["name"].unique()
        changed = ", ".join(units) if len(units) else "none"
        fit = "" if len(models) >= 3 else " (a power law needs three or more sizes)"
        out.append(
            f"Across sizes, {stage} ({' < '.join(models)} by parameter count){fit}: "
            + "; ".join(parts)
            + f". Units that change sides (peak above vs below that size's mean optimum): {changed}."
        )
    return out
