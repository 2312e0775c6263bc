"""Real TRL training steps and real lm-eval scoring on the tiny model (no mocks)."""

import json
import math
from pathlib import Path

import pytest
from conftest import small_study, tiny_setup

from workflow_scripts import synthetic
from workflow_scripts.config import load_study
from workflow_scripts.evaluate import evaluate_cell, primary_scores
from workflow_scripts.io import write_jsonl
from workflow_scripts.train import train_cell


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    cfg = small_study(ratios=(1e-3,), batch_sizes=(4,), train_examples=48)
    made = tiny_setup(d, cfg, n_train=40, n_test=10)
    assert made["sft_rows"] == 4 * 40
    return {"dir": d, "study": load_study(cfg), "test_files": made["test_files"]}


@pytest.fixture(scope="module")
def trained(prepared):
    study = prepared["study"]
    spec = study.training_spec(study.cells[0])
    out = prepared["dir"] / "run"
    record = train_cell(spec, str(prepared["dir"] / "base"), str(prepared["dir"] / "sft.jsonl"), out, threads=1)
    return {"record": record, "out": out, "spec": spec}


def test_training_writes_model_history_and_run_record(trained):
    rec, out, spec = trained["record"], trained["out"], trained["spec"]
    assert spec["per_device_train_batch_size"] == 2 and spec["gradient_accumulation_steps"] == 2
    assert rec["optimizer_steps"] == 12 and rec["examples_seen"] == 48
    assert (out / "model" / "model.safetensors").exists() and (out / "model" / "tokenizer.json").exists()
    on_disk = json.loads((out / "run.json").read_text())
    assert on_disk == rec
    for key in (
        "learning_rate",
        "effective_batch_size",
        "ratio",
        "seed",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "model_revision",
    ):
        assert key in on_disk["spec"]
    assert on_disk["spec"]["learning_rate"] == pytest.approx(on_disk["spec"]["ratio"] * 4)
    assert on_disk["precision"] == {"use_cpu": True, "bf16": False, "fp16": False, "device": "cpu"}
    assert on_disk["sft_config"]["learning_rate"] == 4e-3
    assert on_disk["sft_config"]["gradient_accumulation_steps"] == 2
    # no recompute unless memory needs it (TRL's default is on)
    assert on_disk["activation_checkpointing"] == {"enabled": False, "reason": "no GPU"}
    assert on_disk["sft_config"]["activation_checkpointing"] is False
    assert on_disk["versions"]["trl"] and on_disk["versions"]["transformers"]
    assert len(on_disk["train_file_sha256"]) == 64
    history = json.loads((out / "log_history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)  # step 1, then every 4 steps
    # 12 steps at lr 4e-3 on a random 40k-parameter model: the loss must have come down
    assert losses[-1] < losses[0]


def test_lm_eval_scores_match_the_per_sample_outputs(prepared, trained, tmp_path):
    tasks = prepared["study"].tasks
    out = evaluate_cell(
        str(trained["out"] / "model"),
        tasks,
        prepared["test_files"],
        tmp_path / "results.json",
        tmp_path / "samples",
        batch_size=8,
    )
    assert json.loads((tmp_path / "results.json").read_text())["results"].keys() == tasks.keys()
    scores = primary_scores(out["results"], tasks)
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    for name, task in tasks.items():
        rows = [json.loads(x) for x in (tmp_path / "samples" / f"{name}.jsonl").read_text().splitlines()]
        metric, filt = task["metric"].split(",")
        rows = [r for r in rows if r["filter"] == filt]
        assert len(rows) == 10
        if task["synthetic"] == "arithmetic":
            ok = [float(r["filtered_resps"][0] == r["target"]) for r in rows]
        elif task["synthetic"] == "format":
            ok = [float(synthetic.check_format(r["doc"], r["resps"][0][0])) for r in rows]
        else:  # loglikelihood multiple choice: the most likely choice is the gold one
            ok = [
                float(max(range(len(r["filtered_resps"])), key=lambda i: r["filtered_resps"][i][0]) == int(r["target"]))
                for r in rows
            ]
        assert [r[metric] for r in rows] == ok
        assert out["results"][name][task["metric"]] == pytest.approx(sum(ok) / len(ok))


def test_every_evaluation_is_archived_in_lm_evals_layout_and_a_rerun_keeps_the_first(prepared, trained, tmp_path):
    """The archive is what lm-eval's EvaluationTracker writes (results_<time>.json and
    samples_<task>_<time>.jsonl under the model's sanitised name), found by lm-eval's own
    file helpers; a re-evaluation adds a dated entry and keeps the first."""
    from lm_eval.utils import get_latest_filename, get_results_filenames, get_sample_results_filenames

    tasks = {"compare": prepared["study"].tasks["compare"]}
    archive = tmp_path / "archive"
    out, samples = tmp_path / "eval" / "results.json", tmp_path / "eval" / "samples"
    model = str(trained["out"] / "model")
    evaluate_cell(model, tasks, prepared["test_files"], out, samples, batch_size=8, archive_dir=archive)
    first = json.loads(out.read_text())
    # a rerun: Snakemake deletes the outputs first, then the job writes them anew
    out.unlink()
    for f in samples.iterdir():
        f.unlink()
    evaluate_cell(model, tasks, prepared["test_files"], out, samples, batch_size=8, archive_dir=archive, limit=4)
    (folder,) = archive.iterdir()  # one folder per model, as lm-eval names it
    files = sorted(str(f) for f in folder.iterdir())
    results, sample_files = get_results_filenames(files), get_sample_results_filenames(files)
    assert len(results) == 2 and len(sample_files) == 2 and len(files) == 4
    assert all(Path(f).name.startswith("samples_compare_") for f in sample_files)
    kept = json.loads(Path(min(results)).read_text())
    assert kept["results"] == first["results"] and kept["config"]["limit"] is None
    latest = json.loads(Path(get_latest_filename(results)).read_text())
    assert latest["config"]["limit"] == 4 and latest["results"] == json.loads(out.read_text())["results"]
    # lm-eval's tracker fields, in the live file as in the archive
    assert latest["model_name"] == model and latest["chat_template"] and latest["task_hashes"]["compare"]
    assert latest["pipeline"]["scoring"] == {"limit": 4, "apply_chat_template": True, "max_length": None}
    rows = [json.loads(x) for x in Path(min(sample_files)).read_text().splitlines()]
    assert len(rows) == 10 and "gen_args_0" in rows[0]["arguments"]  # lm-eval's sanitised form


def test_builtin_task_runs_in_the_evaluate_step_on_local_files(prepared, trained, tmp_path):
    """lm-eval's own arc_easy definition (prompt, choices, acc/acc_norm) on files in the
    ai2_arc schema, through the same evaluate_cell the pipeline's evaluate job calls."""
    from workflow_scripts.aggregate import score_rows
    from workflow_scripts.items import load_items

    data = tmp_path / "arc_easy"
    splits = synthetic.generate_splits("compare", 5, 6, 8)  # ARC schema: id, question, choices, answerKey
    data.mkdir()
    write_jsonl(splits["test"], data / "test.jsonl")
    write_jsonl(splits["train"], data / "train.jsonl")
    tasks = {"arc_easy": {"category": "reasoning", "metric": "acc_norm,none", "num_fewshot": 0}}
    out = evaluate_cell(
        str(trained["out"] / "model"),
        tasks,
        {},
        tmp_path / "results.json",
        tmp_path / "samples",
        batch_size=8,
        benchmark_dirs={"arc_easy": str(data)},
    )
    res = out["results"]["arc_easy"]
    assert res["alias"] == "arc_easy" and 0.0 <= res["acc_norm,none"] <= 1.0
    samples = [json.loads(x) for x in (tmp_path / "samples" / "arc_easy.jsonl").read_text().splitlines()]
    assert len(samples) == 8 and samples[0]["doc"]["question"].startswith("which number is the")
    # the built-in definition's own prompt: "Question: ...\nAnswer:"
    assert "Question:" in json.dumps(samples[0]["arguments"])
    rows = score_rows("tiny-llama/sft/r1e-03_bs4_s0", {"status": "ok"}, out, tasks)
    assert [r["value"] for r in rows if r["primary"]] == [res["acc_norm,none"]]
    cells = [{"run_id": "x", "eval_json": str(tmp_path / "results.json")}]
    assert len(load_items(cells, tasks)) == 8


def test_vllm_backend_without_vllm_says_how_to_get_it():
    import importlib.util

    from workflow_scripts.evaluate import backend_model_args

    assert backend_model_args("hf", "m", "float32", 2048, 0) == {
        "pretrained": "m",
        "dtype": "float32",
        "max_length": 2048,
    }
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(RuntimeError, match=r"pip install -e \.\[vllm\].*evaluation.backend: hf"):
        backend_model_args("vllm", "m", "bfloat16", 2048, 0)
