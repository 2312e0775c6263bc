"""How long lm-eval's requests are in tokens, against the budget lm-eval gives each.

A request's prompt is tokenised as lm-eval's HF backend tokenises it
(:func:`request_lengths`), and compared with its budget (:func:`fit`):

* ``generate_until``: the context must fit in ``max_length - max_gen_toks`` (HFLM's
  ``max_ctx_len``; ``max_gen_toks`` from the task's ``generation_kwargs``, default 256);
* ``loglikelihood`` (multiple choice): context + continuation must fit in ``max_length``
  (HFLM itself cuts only beyond ``max_length + 1``; the check keeps the stricter bound);
* ``loglikelihood_rolling``: windowed by lm-eval, never cut (reported, not checked).

:func:`measure` gives each study task its record (a group's: its subtasks' combined).
"""

from __future__ import annotations

import math

from .prompt_requests import model_free_lm

ROUND_TO = 256  # a suggested max_length is a multiple of this
DEFAULT_GEN_TOKS = 256  # HFLM.max_gen_toks: used when a task's generation_kwargs name none
GENERATE, LOGLIKELIHOOD, ROLLING = "generate_until", "loglikelihood", "loglikelihood_rolling"


def request_kind(args) -> str:
    """generate_until (context, generation kwargs), loglikelihood (context, continuation) or
    loglikelihood_rolling (text,): what lm-eval's request ``args`` (or a sample's
    ``arguments`` entry) are."""
    if len(args) == 2 and isinstance(args[1], dict):
        return GENERATE
    return LOGLIKELIHOOD if len(args) == 2 else ROLLING


def max_gen_toks(gen_kwargs: dict) -> int:
    """The tokens lm-eval's HFLM reserves for generation (its ``normalize_gen_kwargs``)."""
    from lm_eval.models.utils import normalize_gen_kwargs

    return int(normalize_gen_kwargs(dict(gen_kwargs), DEFAULT_GEN_TOKS)["max_gen_toks"])


NEAR = 64  # tokens: a loglikelihood pair this close to its budget is encoded whole
TAIL = 64  # characters: a continuation's tokens are counted after this much of its context


def request_lengths(lm, requests: list, exact: bool = False) -> list[tuple[str, int, int]]:
    """``(kind, prompt tokens, generated tokens)`` per request, tokenised as lm-eval does:
    a generation context as ``HFLM.tok_batch_encode`` encodes it; a loglikelihood pair as
    ``TemplateLM._encode_pair`` splits it (prompt = context + continuation).

    A loglikelihood pair costs lm-eval two encodings of its whole text (MMLU-Pro: 120,000
    pairs of ~2,000 tokens: minutes). Here every distinct context is encoded once, and a
    continuation counts the tokens it adds after the context's last ``TAIL`` characters
    (the same few for all the pairs of a task: a cached count); the pairs within ``NEAR``
    tokens of the budget (``lm.max_length``) are then encoded whole, exactly as lm-eval
    does, so the number cut is exact, and a longest below the budget is exact up to how the
    texts join (no difference in any task tests/test_prompt_fit.py compares). ``exact=True``
    encodes every pair whole."""
    from lm_eval.models.utils import has_bos_prefix

    tok = lm.tokenizer
    counter = _TokenCounter(tok)
    bos = getattr(tok, "bos_token", None)
    prefix = tok.decode(lm.prefix_token_id) if lm.prefix_token_id is not None else None

    def encode_kw(text):  # HFLM.tok_encode(text): no special tokens when it starts with BOS
        return False if has_bos_prefix(text, prefix) else None

    plan = []
    for r in requests:
        kind = request_kind(r)
        if kind == GENERATE:  # HFLM.tok_batch_encode (add_bos_token unset)
            ctx, kw = r
            plan.append([GENERATE, counter.want(ctx, False if has_bos_prefix(ctx, bos) else None), max_gen_toks(kw)])
        elif kind == LOGLIKELIHOOD:
            context, continuation = r
            if context == "":  # TemplateLM.loglikelihood: BOS (or EOS) stands in for the context
                cont = tok.encode(continuation, add_special_tokens=False)
                plan.append([LOGLIKELIHOOD, len(cont) + int(lm.prefix_token_id != cont[0]), 0])
                continue
            n_spaces = len(context) - len(context.rstrip())  # TemplateLM._encode_pair
            if n_spaces > 0:
                continuation, context = context[-n_spaces:] + continuation, context[:-n_spaces]
            tail = context[-TAIL:]
            pair = _Pair(
                counter.want(context, encode_kw(context)),
                counter.want(tail, False),
                counter.want(tail + continuation, False),
                context + continuation,
            )
            if exact:
                counter.want(pair[3], encode_kw(pair[3]))
            plan.append([LOGLIKELIHOOD, pair, 0])
        else:  # loglikelihood_rolling: windowed by lm-eval, never cut (reported, not checked)
            plan.append([ROLLING, counter.want(r[0], encode_kw(r[0])), 0])
    counter.count()

    pairs = [p for p in plan if isinstance(p[1], _Pair)]
    for p in pairs:  # first: the context, and what the continuation adds after its tail
        ctx, tail, tail_cont, _ = p[1]
        p.append(counter[ctx] + max(0, counter[tail_cont] - counter[tail]))
    if pairs and not exact and lm._max_length:
        for p in pairs:
            if p[3] > lm._max_length - NEAR:
                counter.want(p[1][3], encode_kw(p[1][3]))
        counter.count()
    out = []
    for p in plan:
        kind, key, gen = p[:3]
        if isinstance(key, _Pair):
            whole = (key[3], encode_kw(key[3]))
            n_ctx = counter[key[0]]
            # len(context_enc) + len(whole_enc[len(context_enc):]), as lm-eval splits the pair
            n = n_ctx + max(0, counter[whole] - n_ctx) if whole in counter else p[3]
        else:
            n = key if isinstance(key, int) else counter[key]
        out.append((kind, n, gen))
    return out


class _Pair(tuple):
    """A loglikelihood pair's counter keys: context, its tail, tail + continuation; and the
    whole text."""

    def __new__(cls, *items):
        return super().__new__(cls, items)


class _TokenCounter:
    """Token counts of many texts: each distinct text encoded once (multiple-choice requests
    share their context), in batches (the Rust tokenizer runs a batch on every core), and
    only the counts kept (MMLU-Pro sends 120,000 prompts). ``special``: None encodes with
    the tokenizer's defaults, False with ``add_special_tokens=False``."""

    def __init__(self, tokenizer, batch: int = 256):
        self.tokenizer, self.batch = tokenizer, batch
        self.pending: dict[tuple, None] = {}
        self.counts: dict[tuple, int] = {}

    def want(self, text: str, special: bool | None) -> tuple:
        key = (text, special)
        if key not in self.counts:
            self.pending[key] = None
        return key

    def count(self) -> None:
        for special in (None, False):
            texts = [t for t, s in self.pending if s is special]
            kw = {} if special is None else {"add_special_tokens": False}
            for i in range(0, len(texts), self.batch):
                chunk = texts[i : i + self.batch]
                ids = self.tokenizer(chunk, return_attention_mask=False, **kw)["input_ids"]
                self.counts.update({(t, special): len(x) for t, x in zip(chunk, ids)})
        self.pending.clear()

    def __getitem__(self, key: tuple) -> int:
        return self.counts[key]

    def __contains__(self, key: tuple) -> bool:
        return key in self.counts


# ---------------------------------------------------------------- per task


def round_up(n: int, to: int = ROUND_TO) -> int:
    return int(math.ceil(n / to) * to)


def fit(lengths: list[tuple[str, int, int]], max_length: int) -> dict:
    """One task's requests against ``max_length``: count, longest, budget, truncated, need."""
    checked = [x for x in lengths if x[0] != ROLLING]
    if not checked:
        return {
            "output_type": lengths[0][0] if lengths else None,
            "requests": len(lengths),
            "longest_prompt_tokens": max((n for _, n, _ in lengths), default=0),
            "max_gen_toks": 0,
            "budget": None,
            "truncated": 0,
            "needs_max_length": None,
        }
    # the binding request: the one that needs the longest sequence (prompt + generation)
    kind, longest, gen = max(checked, key=lambda x: (x[1] + x[2], x[1]))
    return {
        "output_type": kind,
        "requests": len(lengths),
        "longest_prompt_tokens": longest,
        "max_gen_toks": gen,
        "budget": max_length - gen,
        "truncated": sum(1 for _, n, g in checked if n > max_length - g),
        "needs_max_length": round_up(longest + gen),
    }


def combine(records: dict[str, dict]) -> dict:
    """A group's record (bbh) from its subtasks': counts summed, the binding subtask's
    longest prompt and budget, and which subtask that is."""
    worst = max(
        records,
        key=lambda t: (
            records[t]["longest_prompt_tokens"] + records[t]["max_gen_toks"],
            records[t]["longest_prompt_tokens"],
        ),
    )
    out = dict(records[worst])
    out["requests"] = sum(r["requests"] for r in records.values())
    out["truncated"] = sum(r["truncated"] for r in records.values())
    out["longest_in"] = worst
    out["subtasks"] = records
    return out


def leaves_of(name: str, task: dict) -> list[str]:
    """lm-eval task names whose requests make up a study task (a group's subtasks)."""
    if task.get("synthetic"):
        return [name]
    from .builtin_tasks import builtin_leaves

    return builtin_leaves(name)


def measure(requests: dict[str, list], tasks: dict, tokenizer, max_length: int, exact: bool = False) -> dict[str, dict]:
    """Study task -> its record (:func:`fit`; a group: :func:`combine` of its subtasks).
    ``exact``: every loglikelihood pair encoded whole (:func:`request_lengths`)."""
    lm = model_free_lm(tokenizer, max_length)
    out = {}
    for name, task in sorted(tasks.items()):
        leaves = [t for t in leaves_of(name, task) if t in requests]
        per = {t: fit(request_lengths(lm, requests[t], exact), max_length) for t in leaves}
        if not per:
            continue
        out[name] = combine(per) if len(leaves_of(name, task)) > 1 else per[leaves[0]]
    return out
