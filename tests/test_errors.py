"""Error tendencies on hand-built sample files: the exact McNemar test, the halves of a grid,
the best cell of each half, the flips table and the flipped examples."""

import json
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import binomtest

from workflow_scripts.errors import (
    CAP,
    INVALID,
    best_cell,
    doc_key,
    flip_sentences,
    flip_tables,
    halves,
    mcnemar_exact,
    read_item,
)

TASKS = {
    "arith": {"synthetic": "arithmetic", "category": "reasoning", "metric": "exact_match,strict-match"},
    "compare": {"synthetic": "compare", "category": "reasoning", "metric": "acc,none"},
}


def test_mcnemar_exact_by_hand():
    # b = 8, c = 2: 2 * sum_{k<=2} C(10, k) / 2^10 = 2 * 56 / 1024
    assert mcnemar_exact(8, 2) == mcnemar_exact(2, 8) == 0.109375 == 2 * 56 / 1024
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(6, 0) == 2 / 64
    for b, c in [(3, 9), (0, 7), (12, 11), (40, 25)]:
        assert mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12)


def test_halves_leave_the_middle_ratio_out():
    assert halves([4e-4, 1e-4, 2e-4, 3e-4]) == ([1e-4, 2e-4], [3e-4, 4e-4])
    assert halves([3e-4, 1e-4, 2e-4, 1e-4]) == ([1e-4], [3e-4])
    assert halves([1e-4]) == ([], [])


def _rows(cells):
    return pd.DataFrame(
        [
            {"run_id": f"m/sft/c{i}", "ratio": r, "batch_size": bs, "seed": s, "value": v, "status": st}
            for i, (r, bs, s, v, st) in enumerate(cells)
        ]
    )


def test_best_cell_breaks_ties_by_ratio_then_batch_size_then_seed():
    rows = _rows(
        [
            (2e-4, 8, 0, 0.5, "ok"),
            (1e-4, 8, 1, 0.5, "ok"),
            (1e-4, 8, 0, 0.5, "ok"),
            (1e-4, 16, 0, 0.5, "ok"),
            (1e-4, 4, 0, 0.9, "diverged"),
        ]
    )
    assert best_cell(rows, [1e-4, 2e-4])["run_id"] == "m/sft/c2"
    assert best_cell(rows, [2e-4])["run_id"] == "m/sft/c0"
    assert best_cell(rows, [3e-4]) is None


def test_read_item_generative_and_choice():
    gen = {
        "arguments": [["Q: 2+2?", {"until": ["\n"]}]],
        "exact_match": 0.0,
        "filtered_resps": [INVALID],
        "resps": [["four, I think"]],
        "target": "4",
    }
    item = read_item(gen, "exact_match")
    assert item["generative"] and item["no_answer"] and item["response"] == "four, I think"
    assert item["answer"] == INVALID and item["prompt"] == "Q: 2+2?"
    assert not read_item({**gen, "filtered_resps": ["5"]}, "exact_match")["no_answer"]
    assert read_item({**gen, "filtered_resps": ["  "]}, "exact_match")["no_answer"]  # IFEval-style: empty
    assert read_item({**gen, "filtered_resps": [["invalid"]]}, "exact_match")["no_answer"]  # regex_pos's fallback
    assert not read_item({**gen, "filtered_resps": [["NN", "VB"]]}, "exact_match")["no_answer"]
    choice = {
        "arguments": [["Q", "a"], ["Q", "bbbb"]],
        "acc": 1.0,
        "acc_norm": 0.0,
        "filtered_resps": [[-2.0, False], [-3.0, False]],
        "target": 1,
    }
    assert read_item(choice, "acc")["response"] == "a"  # best log-likelihood
    assert read_item(choice, "acc_norm")["response"] == "bbbb"  # per character: -0.75 > -2
    assert doc_key("bbh_x/10") > doc_key("bbh_x/9") > doc_key(99)


def _write_cell(root: Path, run_id: str, answers: dict) -> dict:
    """A cell entry whose tasks' samples give ``answers[task]``: per doc, a response."""
    entry = {"run_id": run_id, "eval_tasks": {}}
    for task, responses in answers.items():
        folder = root / run_id / task
        (folder / "samples").mkdir(parents=True)
        (folder / "results.json").write_text("{}")
        entry["eval_tasks"][task] = str(folder / "results.json")
        lines = []
        for doc, resp in enumerate(responses):
            if task == "arith":  # generative: target str(doc); the strict filter's line and another filter's
                s = {"doc_id": doc, "arguments": [[f"what is {doc}?", {}]], "target": str(doc)}
                s.update(filter="strict-match", filtered_resps=[resp], resps=[[f"say {resp}"]])
                s["exact_match"] = float(resp == str(doc))
                lines += [s, {**s, "filter": "flexible-extract", "exact_match": 1.0}]
            else:  # two choices, the right one is 0: resp is the chosen index
                lls = [[-1.0, True], [-2.0, False]] if resp == 0 else [[-2.0, False], [-1.0, True]]
                s = {"doc_id": doc, "arguments": [["pick", "yes"], ["pick", "no"]], "target": 0}
                lines.append({**s, "filter": "none", "filtered_resps": lls, "acc": float(resp == 0)})
        (folder / "samples" / f"{task}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return entry


def _scores(cells: dict) -> pd.DataFrame:
    rows = []
    for run_id, (ratio, value) in cells.items():
        for task, spec in TASKS.items():
            rows.append(
                {
                    "model": "m",
                    "stage": "sft",
                    "run_id": run_id,
                    "ratio": ratio,
                    "batch_size": 8,
                    "seed": 0,
                    "status": "ok",
                    "task": task,
                    "category": spec["category"],
                    "metric": spec["metric"],
                    "primary": True,
                    "value": value[task],
                }
            )
    return pd.DataFrame(rows)


def test_flips_count_pairs_test_them_and_keep_the_examples(tmp_path):
    # arith: 10 docs. low right on 0-7 and 9 (doc 8: no answer); high right on 0, 1, 9 (docs 2-5 wrong
    # answers, 6-8 no answer): b = 6 (docs 2-7) right only at low, c = 0
    low_arith = [str(d) for d in range(8)] + [INVALID, "9"]
    high_arith = ["0", "1", "7", "7", "7", "7", INVALID, "", INVALID, "9"]
    mid_arith = ["0"] * 10
    # compare: 10 docs; low right on 0-1, high right on 0-9: c = 8, b = 0
    cells = {
        "m/sft/low": (1e-4, {"arith": 0.9, "compare": 0.2}, low_arith, [0, 0] + [1] * 8),
        "m/sft/mid": (2e-4, {"arith": 0.1, "compare": 0.99}, mid_arith, [0] * 10),  # the middle: neither half
        "m/sft/high": (3e-4, {"arith": 0.3, "compare": 1.0}, high_arith, [0] * 10),
    }
    entries = [_write_cell(tmp_path, r, {"arith": a, "compare": c}) for r, (_, _, a, c) in cells.items()]
    scores = _scores({r: (ratio, v) for r, (ratio, v, _, _) in cells.items()})
    flips, examples = flip_tables(scores, entries, TASKS)
    assert list(flips["task"]) == ["arith", "compare"]
    arith, compare = flips.iloc[0], flips.iloc[1]
    assert (arith["low_run"], arith["high_run"], arith["low_ratios"], arith["high_ratios"]) == (
        "m/sft/low",
        "m/sft/high",
        "1e-04",
        "3e-04",
    )
    assert (arith["n_items"], arith["both_right"], arith["both_wrong"]) == (10, 3, 1)
    assert (arith["right_low_only"], arith["right_high_only"]) == (6, 0)
    assert arith["p_mcnemar"] == mcnemar_exact(6, 0) == 1 / 32 and arith["kind"] == "generative"
    assert (arith["low_wrong"], arith["low_no_answer"], arith["low_wrong_answer"]) == (1, 1, 0)
    assert (arith["high_wrong"], arith["high_no_answer"], arith["high_wrong_answer"]) == (7, 3, 4)
    assert arith["high_no_answer_share"] == 3 / 7
    assert (compare["right_low_only"], compare["right_high_only"], compare["kind"]) == (0, 8, "choice")
    assert compare["p_mcnemar"] == 2 / 256 and pd.isna(compare["low_no_answer"])
    assert [(e["task"], e["doc_id"], e["right_at"]) for e in examples] == [
        *[("arith", d, "low") for d in range(2, 8)],
        *[("compare", d, "high") for d in range(2, 10)],
    ]
    first = examples[0]
    assert first["prompt"] == "what is 2?" and first["target"] == "2"
    assert (first["low_response"], first["low_answer"], first["high_answer"]) == ("say 2", "2", "7")
    assert examples[6]["target_text"] == "yes" and examples[6]["low_response"] == "no"
    text = " ".join(flip_sentences(flips))
    assert "arith 6 right only at low, 0 only at high (exact McNemar p = 0.0312)" in text
    assert "arith 100% / 43%" in text


def test_flips_say_why_a_pair_cannot_be_compared(tmp_path):
    scores = _scores({"m/sft/a": (1e-4, {"arith": 0.5, "compare": 0.5})})
    flips, examples = flip_tables(scores, [{"run_id": "m/sft/a", "eval_json": str(tmp_path / "r.json")}], TASKS)
    assert flips["note"].eq("one ratio: no low and high half to compare").all() and examples == []
    assert "not compared (one ratio" in flip_sentences(flips)[0]
    two = _scores({"m/sft/a": (1e-4, {"arith": 0.5, "compare": 0.5}), "m/sft/b": (1e-3, {"arith": 0.4, "compare": 1})})
    entries = [{"run_id": r, "eval_json": str(tmp_path / "r.json")} for r in ("m/sft/a", "m/sft/b")]
    flips, _ = flip_tables(two, entries, TASKS)
    assert flips["note"].eq("no per-item scores (sample files missing)").all()
    assert flips["n_items"].isna().all() and flips["low_run"].eq("m/sft/a").all()


def test_examples_are_capped_half_from_each_side():
    from workflow_scripts.errors import _choose

    assert _choose(list(range(0, 80, 2)), [1, 3], CAP) == sorted([*range(0, 80, 2), 1, 3])  # all 42
    assert _choose(list(range(0, 200, 2)), [1, 3], CAP) == sorted([*range(0, 96, 2), 1, 3])  # 48 + 2
    assert _choose(list(range(0, 200, 2)), list(range(1, 200, 2)), 10) == list(range(10))  # 5 + 5
