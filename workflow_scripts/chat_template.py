"""Which chat template a model trains and is evaluated with, and where an assistant turn ends.

A study names it per model (``models[].chat_template``):

- ``tokenizer`` (the default): the tokenizer's own template; a tokenizer without one is
  refused (a base model such as ``HuggingFaceTB/SmolLM2-135M`` has none);
- ``chatml``: the pipeline's ChatML template (``<|im_start|>role ... <|im_end|>``, SmolLM2's
  format) with ``{% generation %}`` markers around every assistant turn, its ``<|im_end|>``
  included, so TRL's ``assistant_only_loss`` trains every assistant turn and nothing else;
- a path to a Jinja file (relative to the study's folder), with the end-of-turn token in
  ``models[].end_of_turn`` (default: the tokenizer's EOS).

When the pipeline supplies the template it also makes the end of a turn the end of
generation: the tokenizer's EOS becomes the end-of-turn token and the model's
``generation_config`` stops at it, so the saved cell stops where its answer ends (lm-eval's
IFEval has no stop sequences of its own). The saved tokenizer carries the template, so the
evaluation applies exactly the template the cell was trained with.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

# ChatML with generation markers. The end-of-turn token sits inside the marked span: a model
# trained with assistant-only loss learns to stop. No default system prompt is injected.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
BUILTIN = {"chatml": {"template": CHATML, "end_of_turn": "<|im_end|>", "needs": ["<|im_start|>", "<|im_end|>"]}}
TOKENIZER = "tokenizer"


class ChatTemplateError(ValueError):
    """A model that cannot be given a chat template; the message names the config key."""


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def choice_of(model: dict) -> str:
    return model.get("chat_template", TOKENIZER)


def resolve(model: dict, base_dir: str | os.PathLike = ".", key: str = "models[].chat_template") -> dict | None:
    """The template a model config names: ``None`` for the tokenizer's own, else a dict with
    ``name``, ``template`` (Jinja text), ``end_of_turn`` (token or None) and ``sha256``."""
    choice = choice_of(model)
    if choice == TOKENIZER:
        return None
    if choice in BUILTIN:
        b = BUILTIN[choice]
        return {
            "name": choice,
            "template": b["template"],
            "end_of_turn": b["end_of_turn"],
            "sha256": sha256_text(b["template"]),
        }
    path = Path(base_dir) / os.path.expanduser(choice)
    if not path.is_file():
        raise ChatTemplateError(
            f"config error at {key}: {choice!r} is neither {TOKENIZER!r}, one of {sorted(BUILTIN)}, nor a Jinja "
            f"file (looked for {str(path)!r}). Give chatml for SmolLM2-style models, a .jinja file, or "
            f"{TOKENIZER!r} for a tokenizer that ships a template."
        )
    text = path.read_text()
    return {"name": choice, "template": text, "end_of_turn": model.get("end_of_turn"), "sha256": sha256_text(text)}


def spec_entry(model: dict, base_dir: str | os.PathLike = ".") -> dict | None:
    """What a cell's training spec records of its template: name and sha256 (not the text),
    so editing a template file retrains the cells that used it, and nothing else does."""
    chosen = resolve(model, base_dir)
    if chosen is None:
        return None
    return {"name": chosen["name"], "sha256": chosen["sha256"], "end_of_turn": chosen["end_of_turn"]}


def from_spec(entry: dict | None, base_dir: str | os.PathLike = ".") -> dict | None:
    """The template of a training spec's entry, checked against the sha256 it recorded."""
    if entry is None:
        return None
    chosen = resolve({"chat_template": entry["name"], "end_of_turn": entry.get("end_of_turn")}, base_dir)
    if chosen["sha256"] != entry["sha256"]:
        raise ChatTemplateError(
            f"chat template {entry['name']!r} changed since the study was validated "
            f"(sha256 {chosen['sha256'][:12]} != {entry['sha256'][:12]}); rerun Snakemake."
        )
    return chosen


def known_to_lack_template(model_id: str, revision: str | None = None) -> bool:
    """True when the model's tokenizer files are on this machine (a local folder, or the hub
    cache after a prefetch) and define no chat template; False when it has one or when the
    files are not here yet (then the training job checks). Reads two small files, no network."""
    folder = Path(os.path.expanduser(model_id))
    if folder.is_dir():
        config, jinja = folder / "tokenizer_config.json", folder / "chat_template.jinja"
    else:
        from huggingface_hub import try_to_load_from_cache

        config, jinja = (
            try_to_load_from_cache(model_id, name, revision=revision)
            for name in ("tokenizer_config.json", "chat_template.jinja")
        )
        if not isinstance(config, str):
            return False
        config, jinja = Path(config), Path(jinja) if isinstance(jinja, str) else None
    if not config.is_file():
        return False
    if jinja is not None and jinja.is_file():
        return False
    return not json.loads(config.read_text()).get("chat_template")


def apply(
    tokenizer, model, chosen: dict | None, *, end_of_turn: bool = True, key: str = "models[].chat_template"
) -> dict:
    """Give ``tokenizer`` (and ``model``'s generation config) the chosen template and its end
    of turn; return what ``run.json`` records. ``end_of_turn=False`` leaves EOS as it was (the
    tests show what goes wrong then). ``model`` may be None (tokenizer only)."""
    if chosen is None:
        if not tokenizer.chat_template:
            raise ChatTemplateError(
                f"config error at {key}: the tokenizer has no chat template (a base model, e.g. "
                "HuggingFaceTB/SmolLM2-135M). Set chat_template: chatml for SmolLM2-style models, or a Jinja file."
            )
        return {
            "chat_template": TOKENIZER,
            "sha256": sha256_text(tokenizer.chat_template),
            "eos_token": tokenizer.eos_token,
            "end_of_turn_set": False,
        }
    vocab = tokenizer.get_vocab()
    needs = BUILTIN.get(chosen["name"], {}).get("needs", []) + [t for t in [chosen["end_of_turn"]] if t]
    missing = [t for t in needs if t not in vocab]
    if missing:
        raise ChatTemplateError(
            f"config error at {key}: template {chosen['name']!r} needs the token(s) {missing}, "
            "which this tokenizer's vocabulary lacks. Use a template written in its own tokens."
        )
    tokenizer.chat_template = chosen["template"]
    record = {"chat_template": chosen["name"], "sha256": chosen["sha256"], "end_of_turn_set": False}
    eot = chosen["end_of_turn"]
    if end_of_turn and eot and tokenizer.eos_token != eot:
        set_end_of_turn(tokenizer, model, eot)
        record["end_of_turn_set"] = True
    record["eos_token"] = tokenizer.eos_token
    if model is not None:
        record["generation_eos_token_id"] = model.generation_config.eos_token_id
    return record


def set_end_of_turn(tokenizer, model, token: str) -> None:
    """EOS := the end-of-turn token, in the tokenizer, the model config and the generation config
    (which keeps the old EOS too: generation stops at either)."""
    tokenizer.eos_token = token
    if model is None:
        return
    eot = tokenizer.convert_tokens_to_ids(token)
    model.config.eos_token_id = eot
    old = model.generation_config.eos_token_id
    old = [] if old is None else ([old] if isinstance(old, int) else list(old))
    model.generation_config.eos_token_id = [eot, *[i for i in old if i != eot]]
