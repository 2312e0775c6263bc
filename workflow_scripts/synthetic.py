"""Seeded synthetic tasks written in the real benchmarks' schemas (the offline demo).

The items come from :mod:`workflow_scripts.generators` (arithmetic, compare, sequence,
format, choose: one real benchmark's schema each). This module draws them into train and
test splits, disjoint by prompt text, and turns them into what the model sees: the prompt
and the target of an item, SFT chats and DPO preference pairs, mixed over all tasks.
Everything is a pure function of (generator, seed, sizes).

Example (arithmetic): 'tom has 7 coins , finds 3 , loses 4 . how many coins now ?' ->
'7 + 3 = 10 ; 10 - 4 = 6 #### 6'.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable

from .generators import CASES, GENERATOR_SEED_OFFSET, GENERATORS, MAX_NUMBER
from .io import read_jsonl, write_jsonl


def expected_response(doc: dict) -> str:
    """The one response of a format item that follows all its instructions."""
    out = []
    for inst, kw in zip(doc["instruction_id_list"], doc["kwargs"]):
        if inst == "repeat:word":
            out.extend([kw["word"]] * kw["n"])
        else:
            out.extend(CASES[kw["case"]](w) for w in kw["words"])
    return " ".join(out)


def check_format(doc: dict, response: str) -> bool:
    """Verify a response against a format item's instructions (IFEval's 'strict' check)."""
    tokens = response.strip().split()
    pos = 0
    for inst, kw in zip(doc["instruction_id_list"], doc["kwargs"]):
        if inst == "repeat:word":
            want = [kw["word"]] * kw["n"]
        elif inst.startswith("change_case:"):
            want = [CASES[kw["case"]](w) for w in kw["words"]]
        else:
            raise ValueError(f"unknown instruction {inst!r}")
        if tokens[pos : pos + len(want)] != want:
            return False
        pos += len(want)
    return pos == len(tokens)


def prompt_of(generator: str, doc: dict) -> str:
    """The user turn shown to the model (identical in training and evaluation)."""
    return {
        "arithmetic": lambda d: d["question"],
        "compare": lambda d: d["question"],
        "sequence": lambda d: d["ctx"],
        "format": lambda d: d["prompt"],
        "choose": lambda d: d["goal"],
    }[generator](doc)


def target_of(generator: str, doc: dict) -> str:
    """The assistant turn that a perfect model gives."""
    if generator == "arithmetic":
        return doc["answer"]
    if generator == "compare":
        return doc["choices"]["text"][doc["choices"]["label"].index(doc["answerKey"])]
    if generator == "sequence":
        return doc["endings"][int(doc["label"])]
    if generator == "choose":
        return doc["sol1"] if doc["label"] == 0 else doc["sol2"]
    return expected_response(doc)


def rejected_of(generator: str, doc: dict, rng: random.Random) -> str:
    """A plausible wrong assistant turn (the rejected side of a synthetic preference pair)."""
    if generator == "arithmetic":
        work, total = doc["answer"].rsplit(" #### ", 1)
        total = int(total)
        wrong = total + rng.choice([d for d in (-2, -1, 1, 2) if 0 <= total + d <= MAX_NUMBER])
        return f"{work} #### {wrong}"
    if generator == "compare":
        right = target_of(generator, doc)
        return rng.choice([t for t in doc["choices"]["text"] if t != right])
    if generator == "sequence":
        return rng.choice([e for i, e in enumerate(doc["endings"]) if i != int(doc["label"])])
    if generator == "choose":
        return doc["sol2"] if doc["label"] == 0 else doc["sol1"]
    kwargs = copy.deepcopy(doc["kwargs"])  # format: break the first instruction
    inst = doc["instruction_id_list"][0]
    if inst == "repeat:word":
        kwargs[0]["n"] += rng.choice([-1, 1])
    else:
        kwargs[0]["case"] = rng.choice([c for c in CASES if c != kwargs[0]["case"]])
    wrong = expected_response({**doc, "kwargs": kwargs})
    return wrong if not check_format(doc, wrong) else wrong + " " + wrong


def preference_pairs(generator: str, docs: Iterable[dict], rng: random.Random) -> list[dict]:
    """DPO rows in TRL's explicit-prompt conversational form: prompt, chosen, rejected."""
    return [
        {
            "prompt": [{"role": "user", "content": prompt_of(generator, d)}],
            "chosen": [{"role": "assistant", "content": target_of(generator, d)}],
            "rejected": [{"role": "assistant", "content": rejected_of(generator, d, rng)}],
            "source": generator,
        }
        for d in docs
    ]


def generate_splits(generator: str, seed: int, n_train: int, n_test: int) -> dict[str, list[dict]]:
    """Disjoint train and test items (by prompt), deterministic in ``seed``."""
    rng = random.Random(seed * 1000 + GENERATOR_SEED_OFFSET[generator])
    make = GENERATORS[generator]
    seen: dict[str, dict] = {}
    attempts, wanted = 0, n_train + n_test
    while len(seen) < wanted:
        attempts += 1
        if attempts > 50 * wanted:
            raise RuntimeError(f"{generator}: only {len(seen)} distinct items after {attempts} draws")
        doc = make(rng, len(seen))
        seen.setdefault(prompt_of(generator, doc), doc)
    docs = list(seen.values())
    return {"test": docs[:n_test], "train": docs[n_test:]}


def sft_messages(generator: str, docs: Iterable[dict]) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": prompt_of(generator, d)},
                {"role": "assistant", "content": target_of(generator, d)},
            ],
            "source": generator,
        }
        for d in docs
    ]


def write_task(generator: str, seed: int, n_train: int, n_test: int, train_path, test_path) -> None:
    splits = generate_splits(generator, seed, n_train, n_test)
    write_jsonl(splits["train"], train_path)
    write_jsonl(splits["test"], test_path)


def build_sft_set(task_train_files: dict[str, tuple[str, str]], out_path, seed: int) -> int:
    """Mix the train splits of all synthetic tasks into one shuffled chat dataset.

    ``task_train_files`` maps task name -> (generator, path of its train split).
    """
    rows = []
    for _, (generator, path) in sorted(task_train_files.items()):
        rows.extend(sft_messages(generator, read_jsonl(path)))
    random.Random(seed).shuffle(rows)
    write_jsonl(rows, out_path)
    return len(rows)


def build_preference_set(task_train_files: dict[str, tuple[str, str]], out_path, seed: int) -> int:
    """Preference pairs from the train splits of all synthetic tasks, shuffled (DPO's data)."""
    rng = random.Random(seed)
    rows = []
    for _, (generator, path) in sorted(task_train_files.items()):
        rows.extend(preference_pairs(generator, read_jsonl(path), rng))
    rng.shuffle(rows)
    write_jsonl(rows, out_path)
    return len(rows)
