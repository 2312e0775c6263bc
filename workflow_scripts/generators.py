"""The seeded item generators of the synthetic tasks, each writing a real benchmark's schema.

Four generators, two per category of the SmolTulu split:

==========  ===========  =========================  ==========================================
generator   category     schema of                  what the model must do
==========  ===========  =========================  ==========================================
arithmetic  reasoning    GSM8K (question, answer)   two-step word problem, worked steps, #### N
compare     reasoning    ARC (id, question,         pick the largest / smallest of four numbers
                         choices{text,label},
                         answerKey)
sequence    pattern      HellaSwag (ctx, endings,   continue a number progression or a word cycle
                         label as a string, ...)
format      pattern      IFEval (key, prompt,       repeat a word n times / rewrite words in a case;
                         instruction_id_list,       checked by ``check_format``
                         kwargs)
choose      (tests)      PIQA (goal, sol1, sol2,    pick the larger / smaller of two numbers
                         label)
==========  ===========  =========================  ==========================================

Words and numbers are single whitespace-separated tokens so that a word-level tokenizer and
a 0.5M-parameter model learn them on two CPU cores. A generator is a pure function of the
random generator it is given and the item's index;
:func:`workflow_scripts.synthetic.generate_splits` seeds it and draws the splits, and
:func:`workflow_scripts.synthetic.check_format` checks a response to a format item.
"""

from __future__ import annotations

import random
from collections.abc import Callable

NAMES = ["tom", "ann", "bob", "eve", "sam", "kim", "lee", "max", "zoe", "ada"]
ITEMS = ["apples", "coins", "books", "cards", "pens", "shells", "stamps", "eggs"]
WORDS = [
    "cat",
    "dog",
    "sun",
    "tree",
    "fish",
    "bird",
    "moon",
    "rock",
    "star",
    "leaf",
    "rain",
    "snow",
    "fire",
    "wind",
    "lake",
    "hill",
    "rose",
    "bell",
    "ship",
    "road",
]
COLORS = ["red", "blue", "green", "gold", "pink", "gray", "black", "white"]
CASES = {"upper": str.upper, "lower": str.lower, "title": str.title}
MAX_NUMBER = 199  # numbers 0..MAX_NUMBER are single tokens


def _arithmetic(rng: random.Random, i: int) -> dict:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a = rng.randint(2, 20)
    ops = [("gets", 1), ("finds", 1), ("buys", 1), ("loses", -1), ("sells", -1), ("eats", -1)]
    steps, total, text = [], a, [f"{name} has {a} {item}"]
    for _ in range(2):
        verb, sign = rng.choice(ops)
        if sign < 0 and total < 2:
            verb, sign = "gets", 1
        b = rng.randint(1, 9) if sign > 0 else rng.randint(1, min(9, total))
        new = total + sign * b
        text.append(f"{verb} {b}")
        steps.append(f"{total} {'+' if sign > 0 else '-'} {b} = {new}")
        total = new
    question = " , ".join(text) + f" . how many {item} now ?"
    answer = " ; ".join(steps) + f" #### {total}"
    return {"question": question, "answer": answer}


def _compare(rng: random.Random, i: int) -> dict:
    nums = rng.sample(range(0, 100), 4)
    which = rng.choice(["largest", "smallest"])
    correct = max(nums) if which == "largest" else min(nums)
    labels = ["A", "B", "C", "D"]
    question = f"which number is the {which} : {' '.join(map(str, nums))} ?"
    return {
        "id": f"compare-{i}",
        "question": question,
        "choices": {"text": [str(n) for n in nums], "label": labels},
        "answerKey": labels[nums.index(correct)],
    }


def _sequence(rng: random.Random, i: int) -> dict:
    if rng.random() < 0.5:
        step = rng.choice([-1, 1]) * rng.randint(1, 9)
        lo = 0 if step > 0 else -7 * step
        hi = MAX_NUMBER - 7 * step if step > 0 else MAX_NUMBER
        start = rng.randint(lo, min(hi, 120))
        shown = rng.randint(3, 5)
        seq = [start + k * step for k in range(shown + 2)]
        ctx, nxt = seq[:shown], seq[shown:]
        wrong = [
            [nxt[0], nxt[1] + step],  # right start, wrong step
            [nxt[0] + step, nxt[1] + step],  # skips one
            [ctx[-1], ctx[-2]],  # goes back
            [nxt[0] + 1, nxt[1] + 1],  # off by one
            [nxt[0] - 1, nxt[1]],
        ]
        wrong = [w for w in wrong if all(0 <= x <= MAX_NUMBER for x in w) and w != nxt]
        correct = " ".join(map(str, nxt))
        distractors = list(dict.fromkeys(" ".join(map(str, w)) for w in wrong))
        ctx_text = " ".join(map(str, ctx))
        label = "numbers"
    else:
        period = rng.choice([2, 3])
        cyc = rng.sample(COLORS + WORDS, period)
        shown = 2 * period + rng.randint(0, period - 1)
        seq = [cyc[k % period] for k in range(shown + 2)]
        ctx, nxt = seq[:shown], seq[shown:]
        pool = [w for w in COLORS + WORDS if w not in cyc]
        wrong = [[nxt[1], nxt[0]], [nxt[0], nxt[0]], [rng.choice(pool), nxt[1]], [nxt[0], rng.choice(pool)]]
        correct = " ".join(nxt)
        distractors = list(dict.fromkeys(" ".join(w) for w in wrong if w != nxt))
        ctx_text = " ".join(ctx)
        label = "words"
    distractors = [d for d in distractors if d != correct][:3]
    endings = distractors + [correct]
    rng.shuffle(endings)
    return {
        "ind": i,
        "activity_label": label,
        "ctx_a": ctx_text,
        "ctx_b": "",
        "ctx": f"continue : {ctx_text}",
        "endings": endings,
        "source_id": f"synthetic-sequence-{i}",
        "split": "test",
        "split_type": "synthetic",
        "label": str(endings.index(correct)),
    }


def _format(rng: random.Random, i: int) -> dict:
    if rng.random() < 0.5:
        word, n = rng.choice(WORDS), rng.randint(2, 5)
        prompt = f"repeat the word {word} {n} times"
        ids, kwargs = ["repeat:word"], [{"word": word, "n": n}]
    else:
        case = rng.choice(list(CASES))
        words = rng.sample(WORDS, rng.randint(2, 3))
        shown = [w.title() if case == "lower" else w for w in words]
        prompt = f"write {' '.join(shown)} in {case} case"
        ids, kwargs = [f"change_case:{case}"], [{"words": words, "case": case}]
    return {"key": i, "prompt": prompt, "instruction_id_list": ids, "kwargs": kwargs}


def _choose(rng: random.Random, i: int) -> dict:
    """PIQA schema (goal, sol1, sol2, label as int): pick the larger or smaller of two numbers."""
    a, b = rng.sample(range(0, 100), 2)
    which = rng.choice(["larger", "smaller"])
    correct = max(a, b) if which == "larger" else min(a, b)
    return {
        "goal": f"which number is {which} : {a} {b} ?",
        "sol1": str(a),
        "sol2": str(b),
        "label": 0 if correct == a else 1,
    }


GENERATORS: dict[str, Callable[[random.Random, int], dict]] = {
    "arithmetic": _arithmetic,
    "compare": _compare,
    "sequence": _sequence,
    "format": _format,
    "choose": _choose,
}
GENERATOR_SEED_OFFSET = {"arithmetic": 0, "compare": 1, "sequence": 2, "format": 3, "choose": 4}
