"""A tiny Llama and a word-level tokenizer, built locally and saved like a hub model.

The demo study trains this model from scratch. It is saved with ``save_pretrained`` so
training and evaluation load it through exactly the code path that loads SmolLM2 from
the hub (``AutoModelForCausalLM.from_pretrained(path_or_id, revision=...)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .synthetic import MAX_NUMBER

SPECIAL = {"pad": "<|pad|>", "unk": "<|unk|>", "user": "<|user|>", "assistant": "<|assistant|>", "eos": "<|end|>"}

# Assistant turns are wrapped in {% generation %} so that TRL's assistant_only_loss works.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<|assistant|> {% generation %}{{ message['content'] }} <|end|>{% endgeneration %} "
    "{% else %}"
    "<|user|> {{ message['content'] }} <|end|> "
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def build_tokenizer(texts: Iterable[str], max_length: int):
    """A whitespace word-level fast tokenizer whose vocabulary is every word in ``texts``.

    All numbers 0..MAX_NUMBER are in the vocabulary whether seen or not, so a model can
    emit any answer the tasks can have.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words: set[str] = {str(n) for n in range(MAX_NUMBER + 1)}
    for t in texts:
        words.update(t.split())
    vocab = {tok: i for i, tok in enumerate(SPECIAL.values())}
    for w in sorted(words - set(vocab)):
        vocab[w] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL["unk"]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=SPECIAL["pad"],
        unk_token=SPECIAL["unk"],
        eos_token=SPECIAL["eos"],
        additional_special_tokens=[SPECIAL["user"], SPECIAL["assistant"]],
        model_max_length=max_length,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llama(
    tokenizer,
    *,
    hidden_size=128,
    intermediate_size=512,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=None,
    max_position_embeddings=128,
    seed=0,
):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads or num_attention_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def build_and_save(texts: Iterable[str], out_dir: str | Path, build: dict) -> dict:
    """Build tokenizer + model from the ``build:`` block of a model entry and save both."""
    build = dict(build)
    seed = build.pop("seed", 0)
    max_pos = build.get("max_position_embeddings", 128)
    tokenizer = build_tokenizer(texts, max_length=max_pos)
    model = build_tiny_llama(tokenizer, seed=seed, **build)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"vocab_size": len(tokenizer), "parameters": sum(p.numel() for p in model.parameters())}


def build_from_sft_file(sft_file: str | Path, out_dir: str | Path, build: dict) -> dict:
    """Train the word-level vocabulary on the SFT set's text, then build and save the model."""
    from .io import read_jsonl

    texts = [m["content"] for row in read_jsonl(sft_file) for m in row["messages"]]
    return build_and_save(texts, out_dir, build)
