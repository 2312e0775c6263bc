"""Error tendencies: which items flip between the best low-ratio and the best high-ratio cell.

Per model x stage, the grid's ratios split into a lower and an upper half (:func:`halves`;
with an odd count the middle ratio belongs to neither). Per task, the best cell of each half
is the one with the highest primary score (ties: the smaller ratio, then batch size, then
seed; only runs that ended ``ok`` and were scored). Their items (the same lm-eval sample
files :mod:`workflow_scripts.items` reads) are paired by doc id: an item is right when its
primary-metric score exceeds 0.5 (every supported primary metric scores an item 0 or 1).
``flips`` counts the items right only at low and right only at high, with the exact
McNemar test on those discordant pairs (:func:`mcnemar_exact`). For a generative task
(``filtered_resps`` are strings) it also splits each cell's wrong answers into "no answer"
(lm-eval's extraction filters return ``[invalid]`` when their pattern finds nothing; a task
without one, such as IFEval, scores the whole response, where only an empty one is no
answer) and a wrong extracted answer. ``flipped_examples.jsonl`` holds the flipped items a
researcher can read: prompt, target and both responses, at most :data:`CAP` per task.
"""

from __future__ import annotations

import math

import pandas as pd

from .items import task_samples
from .lmeval_tasks import split_metric
from .numbers import fmt_num

INVALID = "[invalid]"  # lm_eval.filters.extraction: RegexFilter's and MultiChoiceRegexFilter's fallback
CAP = 50  # flipped examples per model x stage x task
SIDES = ("low", "high")
COUNTS = ["n_items", "both_right", "both_wrong", "right_low_only", "right_high_only"]
ANSWERS = [f"{side}_{what}" for side in SIDES for what in ("wrong", "no_answer", "wrong_answer")]
COLUMNS = [
    *["model", "stage", "task", "category", "metric", "low_ratios", "high_ratios"],
    *["low_run", "low_score", "high_run", "high_score", "kind", *COUNTS, "p_mcnemar"],
    *ANSWERS,
    *["low_no_answer_share", "high_no_answer_share", "note"],
]


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p: the binomial test of ``b`` against ``c`` discordant pairs
    with p = 1/2, ``min(1, 2 * P(X <= min(b, c)))`` for X ~ Bin(b + c, 1/2); 1 with none."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def halves(ratios) -> tuple[list[float], list[float]]:
    """The lower and upper half of a grid's ratios (sorted; an odd count leaves the middle out)."""
    r = sorted(set(float(x) for x in ratios))
    h = len(r) // 2
    return r[:h], r[len(r) - h :]


def best_cell(rows: pd.DataFrame, ratios: list[float]):
    """The row with the highest score among ``ratios`` (ties: smaller ratio, batch size, seed)."""
    g = rows[rows["ratio"].isin(ratios) & rows["value"].notna()]
    if "status" in g.columns:
        g = g[g["status"].astype(str) == "ok"]
    if g.empty:
        return None
    g = g.assign(_neg=-g["value"]).sort_values(["_neg", "ratio", "batch_size", "seed"], kind="stable")
    return g.iloc[0]


def read_item(sample: dict, metric: str) -> dict:
    """One sample as the flip analysis reads it: score, prompt, target and the response."""
    resps, args = sample.get("filtered_resps") or [], sample.get("arguments") or []
    first = args[0] if args and isinstance(args[0], (list, tuple)) else []
    item = {"score": float(sample[metric]), "prompt": first[0] if first else sample.get("doc"), "choices": None}
    item["target"] = sample.get("target")
    scored = all(isinstance(r, (list, tuple)) and len(r) == 2 and isinstance(r[0], (int, float)) for r in resps)
    if not (resps and scored):  # generated: the raw text, and what the filter extracted
        raw = sample.get("resps") or [[None]]
        answer = resps[0] if resps else None
        item.update(generative=True, response=(raw[0] or [None])[0], answer=answer)
        item["no_answer"] = answer in (None, [], ["invalid"]) or (
            isinstance(answer, str) and answer.strip() in ("", INVALID)
        )
        return item
    choices = [a[1] for a in args]  # chosen among continuations: the one with the best log-likelihood
    lls = [float(r[0]) for r in resps]
    if metric == "acc_norm":  # lm-eval normalises by the continuation's length in characters
        lls = [ll / max(len(ch), 1) for ll, ch in zip(lls, choices)]
    pick = max(range(len(lls)), key=lambda i: (lls[i], -i)) if lls else None
    item.update(generative=False, choices=choices, answer=pick, no_answer=False)
    item["response"] = choices[pick] if pick is not None and pick < len(choices) else None
    return item


def _items(cell: dict | None, tasks: dict, task: str) -> dict:
    if cell is None:
        return {}
    metric, _ = split_metric(tasks[task]["metric"])
    return {doc: read_item(s, metric) for doc, s in task_samples(cell, tasks, task)}


def doc_key(doc) -> tuple:
    """Sort key of a doc id: plain ints in order, then a group's ``"leaf/n"`` by leaf and n."""
    if isinstance(doc, str) and "/" in doc:
        leaf, n = doc.rsplit("/", 1)
        return (1, leaf, int(n))
    return (0, "", int(doc))


def _choose(right_low: list, right_high: list, cap: int) -> list:
    """Up to ``cap`` flipped docs, half from each direction where both have enough."""
    n_low = min(len(right_low), max(cap // 2, cap - len(right_high)))
    n_high = min(len(right_high), cap - n_low)
    return sorted(right_low[:n_low] + right_high[:n_high], key=doc_key)


def _example(key: dict, doc, side: str, low: dict, high: dict) -> dict:
    out = {**key, "doc_id": doc, "right_at": side, "prompt": low["prompt"]}
    if low["choices"] is not None:
        out["choices"] = low["choices"]
    out["target"] = low["target"]
    if low["choices"] is not None and isinstance(low["target"], int) and 0 <= low["target"] < len(low["choices"]):
        out["target_text"] = low["choices"][low["target"]]
    for name, item in (("low", low), ("high", high)):
        out[f"{name}_response"], out[f"{name}_answer"] = item["response"], item["answer"]
    return out


def flip_tables(scores: pd.DataFrame, cells: list[dict], tasks: dict, cap: int = CAP) -> tuple[pd.DataFrame, list]:
    """The ``flips`` table (one row per model x stage x task) and the flipped examples."""
    prim = scores[scores["primary"]]
    by_run = {c["run_id"]: c for c in cells}
    rows, examples = [], []
    for (model, stage), g in prim.groupby(["model", "stage"], sort=True):
        low, high = halves(g["ratio"].unique())
        for task, t in g.groupby("task", sort=True):
            row = {"model": model, "stage": stage, "task": task, "category": t["category"].iloc[0]}
            row.update(metric=t["metric"].iloc[0], low_ratios=" ".join(map(fmt_num, low)))
            row["high_ratios"] = " ".join(map(fmt_num, high))
            rows.append(row)
            if not low:
                row["note"] = "one ratio: no low and high half to compare"
                continue
            best = {"low": best_cell(t, low), "high": best_cell(t, high)}
            if any(b is None for b in best.values()):
                row["note"] = "no scored cell in the " + " and ".join(s for s in SIDES if best[s] is None) + " half"
                continue
            for side, b in best.items():
                row[f"{side}_run"], row[f"{side}_score"] = b["run_id"], float(b["value"])
            a, z = (_items(by_run.get(best[s]["run_id"]), tasks, task) for s in SIDES)
            docs = sorted(set(a) & set(z), key=doc_key)
            if not docs:
                row["note"] = "no per-item scores (sample files missing)"
                continue
            ok_low = {d: a[d]["score"] > 0.5 for d in docs}
            ok_high = {d: z[d]["score"] > 0.5 for d in docs}
            right_low = [d for d in docs if ok_low[d] and not ok_high[d]]
            right_high = [d for d in docs if ok_high[d] and not ok_low[d]]
            row.update(
                n_items=len(docs),
                both_right=sum(ok_low[d] and ok_high[d] for d in docs),
                both_wrong=sum(not (ok_low[d] or ok_high[d]) for d in docs),
                right_low_only=len(right_low),
                right_high_only=len(right_high),
                p_mcnemar=mcnemar_exact(len(right_low), len(right_high)),
                note="",
            )
            generative = a[docs[0]]["generative"]
            row["kind"] = "generative" if generative else "choice"
            if generative:
                for side, items, ok in (("low", a, ok_low), ("high", z, ok_high)):
                    wrong = [d for d in docs if not ok[d]]
                    none = sum(items[d]["no_answer"] for d in wrong)
                    row.update({f"{side}_wrong": len(wrong), f"{side}_no_answer": none})
                    row[f"{side}_wrong_answer"] = len(wrong) - none
                    row[f"{side}_no_answer_share"] = none / len(wrong) if wrong else float("nan")
            key = {"model": model, "stage": stage, "task": task, "low_run": row["low_run"], "high_run": row["high_run"]}
            won = set(right_low)
            for d in _choose(right_low, right_high, cap):
                examples.append(_example(key, d, "low" if d in won else "high", a[d], z[d]))
    flips = pd.DataFrame(rows, columns=COLUMNS)
    for col in [*COUNTS, *ANSWERS]:
        flips[col] = flips[col].astype("Int64")
    flips["note"] = flips["note"].fillna("")
    return flips, examples


def flip_sentences(flips: pd.DataFrame) -> list[str]:
    """Per model x stage: the flips of each task, and the generative tasks' unanswered share."""
    out = []
    for (model, stage), g in flips.groupby(["model", "stage"], sort=True):
        head = f"{model} / {stage}, items that flip between each task's best low-ratio and best high-ratio cell"
        done = g[g["n_items"].notna()]
        if done.empty:
            out.append(f"{head}: not compared ({'; '.join(dict.fromkeys(g['note']))}).")
            continue
        parts = [
            f"{r['task']} {r['right_low_only']} right only at low, {r['right_high_only']} only at high "
            f"(exact McNemar p = {r['p_mcnemar']:.3g})"
            for _, r in done.iterrows()
        ]
        text = f"{head} (flips.csv names the cells): " + "; ".join(parts)
        gen = done[done["kind"] == "generative"]
        shares = [
            f"{r['task']} {_share(r['low_no_answer_share'])} / {_share(r['high_no_answer_share'])}"
            for _, r in gen.iterrows()
        ]
        if shares:
            text += ". Wrong answers with no extractable answer (low / high cell): " + "; ".join(shares)
        out.append(text + ".")
    return out


def _share(v) -> str:
    return "n/a" if pd.isna(v) else f"{100 * v:.0f}%"
