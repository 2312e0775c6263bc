"""lm-eval's own gsm8k, arc_challenge, hellaswag and piqa definitions on local files in those
benchmarks' schemas: the real prompts, few-shot settings, filters and metrics, no hub."""

import json

import pytest

from workflow_scripts import synthetic
from workflow_scripts.builtin_tasks import builtin_task_config
from workflow_scripts.tiny_model import build_and_save

# built-in task -> (synthetic generator writing that benchmark's schema, split names)
TASKS = {
    "gsm8k": ("arithmetic", {"train": "train", "test": "test"}),
    "arc_challenge": ("compare", {"train": "train", "validation": "test", "test": "test"}),
    "hellaswag": ("sequence", {"train": "train", "validation": "test"}),
    "piqa": ("choose", {"train": "train", "validation": "test"}),
}
LIMIT = 6


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    import lm_eval

    d = tmp_path_factory.mktemp("builtin")
    configs, texts = [], []
    for name, (gen, splits) in TASKS.items():
        data = synthetic.generate_splits(gen, 3, 20, LIMIT)
        files = {}
        for split, source in splits.items():
            files[split] = d / f"{name}_{split}.jsonl"
            synthetic.write_jsonl(data[source], files[split])
        for doc in data["train"] + data["test"]:
            texts += [synthetic.prompt_of(gen, doc), synthetic.target_of(gen, doc)]
        configs.append(builtin_task_config(name, files))
    # an untrained tiny model whose vocabulary knows the benchmark prompts' words too
    texts.append("Question: Answer: : .")
    build_and_save(texts, d / "model", {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                        "num_attention_heads": 2, "max_position_embeddings": 2048})
    out = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(d / "model"), "max_length": 2048},
                                  tasks=configs, batch_size=8, device="cpu", limit=LIMIT, log_samples=True,
                                  gen_kwargs={"max_gen_toks": 16})
    return out


def test_builtin_definitions_ran_with_their_own_metrics(evaluated):
    res = evaluated["results"]
    assert set(res) == set(TASKS)
    assert {"exact_match,strict-match", "exact_match,flexible-extract"} <= set(res["gsm8k"])
    for name in ("arc_challenge", "hellaswag", "piqa"):
        assert {"acc,none", "acc_norm,none"} <= set(res[name])
    for name, r in res.items():
        assert all(0.0 <= v <= 1.0 for k, v in r.items() if "," in k and "stderr" not in k), name
    assert evaluated["n-shot"]["gsm8k"] == 5  # gsm8k's own few-shot count


def test_real_prompts_and_multiple_choice_scoring(evaluated):
    samples = evaluated["samples"]
    gsm = samples["gsm8k"][0]
    prompt = gsm["arguments"][0][0]  # (context, generation kwargs) of the one request
    assert prompt.count("Question:") == 6  # five shots from the local train split, then the item
    n_choices = {"arc_challenge": 4, "hellaswag": 4, "piqa": 2}
    for name, n in n_choices.items():
        rows = [r for r in samples[name] if r["filter"] == "none"]
        assert len(rows) == LIMIT
        for r in rows:
            lls = [x[0] for x in r["filtered_resps"]]
            assert len(lls) == n
            assert r["acc"] == float(max(range(n), key=lambda i: lls[i]) == int(r["target"]))
    assert "Question:" in json.dumps(samples["piqa"][0]["arguments"])  # piqa's own prompt template


def test_missing_split_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"task 'gsm8k' reads splits \['test', 'train'\]; no local file for \['train'\]"):
        builtin_task_config("gsm8k", {"test": tmp_path / "x.jsonl"})
