"""lm-eval's own definitions of gsm8k, arc_challenge, hellaswag, piqa, leaderboard_mmlu_pro,
ifeval and the bbh group, run for real on a tiny model with the chat template, on local files
in those datasets' schemas laid out as ``benchmark_files`` says: the real prompts, few-shot
settings, filters and metrics, no hub, and only the splits lm-eval actually reads."""

import json
from pathlib import Path

import pytest

from workflow_scripts import synthetic
from workflow_scripts.builtin_tasks import (
    BUILTINS,
    benchmark_files,
    builtin_leaves,
    builtin_metrics,
    builtin_score,
    builtin_specs,
    builtin_task_config,
    load_definition,
    read_splits,
    tasks_dir,
)
from workflow_scripts.io import write_jsonl
from workflow_scripts.registry import BBH_SUBTASKS
from workflow_scripts.tiny_model import build_and_save

# built-in task -> (synthetic generator writing that benchmark's schema, split -> generated split)
SYNTHETIC = {
    "gsm8k": ("arithmetic", {"train": "train", "test": "test"}),
    "arc_challenge": ("compare", {"train": "train", "test": "test"}),
    "hellaswag": ("sequence", {"train": "train", "validation": "test"}),
    "piqa": ("choose", {"train": "train", "validation": "test"}),
}
RUN = [*SYNTHETIC, "leaderboard_mmlu_pro", "ifeval", "bbh"]
LIMIT = 6

# google/IFEval: every kwargs entry carries all instruction arguments, null where unused
IFEVAL_KWARGS = (
    "num_highlights",
    "relation",
    "num_words",
    "num_placeholders",
    "prompt_to_repeat",
    "num_bullets",
    "section_spliter",
    "num_sections",
    "capital_relation",
    "capital_frequency",
    "keywords",
    "num_paragraphs",
    "language",
    "let_relation",
    "letter",
    "let_frequency",
    "end_phrase",
    "forbidden_words",
    "keyword",
    "frequency",
    "num_sentences",
    "postscript_marker",
    "first_word",
    "nth_paragraph",
)
IFEVAL = [
    (
        1000,
        "Write a 300+ word summary of the wikipedia page about the moon. Do not use any commas and highlight at "
        "least 3 sections that has titles in markdown format.",
        [
            ("punctuation:no_comma", {}),
            ("detectable_format:number_highlighted_sections", {"num_highlights": 3}),
            ("length_constraints:number_words", {"relation": "at least", "num_words": 300}),
        ],
    ),
    (
        1001,
        "Write a short story about a cat. Answer with less than 5 sentences.",
        [("length_constraints:number_sentences", {"relation": "less than", "num_sentences": 5})],
    ),
    (
        1005,
        "Describe a river in English, in all lowercase letters. Include the keywords water and stone.",
        [
            ("language:response_language", {"language": "en"}),
            ("change_case:english_lowercase", {}),
            ("keywords:existence", {"keywords": ["water", "stone"]}),
        ],
    ),
    (
        1012,
        "Write a poem about numbers. Finish your response with the exact phrase Is there anything else I can "
        "help with?",
        [("startend:end_checker", {"end_phrase": "Is there anything else I can help with?"})],
    ),
]


def ifeval_rows():
    return [
        {
            "key": key,
            "prompt": prompt,
            "instruction_id_list": [i for i, _ in ins],
            "kwargs": [{k: kw.get(k) for k in IFEVAL_KWARGS} for _, kw in ins],
        }
        for key, prompt, ins in IFEVAL
    ]


def mmlu_pro_rows(split, n):
    rows = []
    for i in range(n):
        a, b = 3 + i, 4 + 2 * i
        options = [str(a + b + d) for d in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5)]
        options = options[i % 10 :] + options[: i % 10]
        ans = options.index(str(a + b))
        rows.append(
            {
                "question_id": 70 * (split == "test") + i,
                "question": f"What is {a} + {b} ?",
                "options": options,
                "answer": "ABCDEFGHIJ"[ans],
                "answer_index": ans,
                "cot_content": f"A: Let's think step by step. {a} + {b} = {a + b}. The answer is ({'ABCDEFGHIJ'[ans]})."
                if split == "validation"
                else "",
                "category": "math",
                "src": f"ori_mmlu-elementary_mathematics-{i}",
            }
        )
    return rows


def bbh_rows(subtask):
    if subtask == "boolean_expressions":
        return [
            {"input": "not ( True ) and ( True ) is", "target": "False"},
            {"input": "True and not not ( not False ) is", "target": "True"},
        ]
    return [
        {
            "input": f"Question about {subtask.replace('_', ' ')} : which option is right ?\nOptions:\n(A) one\n"
            f"(B) two",
            "target": "(A)",
        }
    ]


def write_rows(rows, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(rows, path)


def write_benchmark(name, data_dir) -> list[str]:
    """Files of benchmark_files(name, data_dir) in the dataset's schema; returns text for the vocabulary."""
    files = benchmark_files(name, data_dir)
    texts = []
    if name in SYNTHETIC:
        gen, splits = SYNTHETIC[name]
        data = synthetic.generate_splits(gen, 3, 20, LIMIT)
        for split, source in splits.items():
            write_rows(data[source], files[split])
        texts += [
            t
            for doc in data["train"] + data["test"]
            for t in (synthetic.prompt_of(gen, doc), synthetic.target_of(gen, doc))
        ]
    elif name == "leaderboard_mmlu_pro":
        for split, n in (("validation", 5), ("test", LIMIT)):
            write_rows(mmlu_pro_rows(split, n), files[split])
            texts += [json.dumps(r) for r in mmlu_pro_rows(split, n)]
    elif name == "ifeval":
        write_rows(ifeval_rows(), files["train"])  # punkt_tab files: builtin_specs writes them
        texts += [p for _, p, _ in IFEVAL]
    elif name == "bbh":
        for s in BBH_SUBTASKS:
            write_rows(bbh_rows(s), files[f"{s}/test"])
            texts += [r["input"] + " " + r["target"] for r in bbh_rows(s)]
    return texts


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    import datasets
    import lm_eval
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks import TaskManager

    d = tmp_path_factory.mktemp("builtin")
    read = {}  # lm-eval task -> splits of its dataset it indexed

    class Recording(datasets.DatasetDict):
        def __getitem__(self, k):
            read.setdefault(self.task, set()).add(k)
            return super().__getitem__(k)

    download = ConfigurableTask.download

    def recording_download(self, *a, **kw):
        download(self, *a, **kw)
        rec = Recording(self.dataset)
        rec.task = self.config.task
        self.dataset = rec

    texts = ["Question: Answer: : . A: Let's think step by step. So the answer is"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ConfigurableTask, "download", recording_download)
        specs = []
        for name in RUN:
            texts += write_benchmark(name, d / "data" / name)
            specs += builtin_specs(name, d / "data" / name, None)
        # an untrained tiny model whose vocabulary knows the benchmark prompts' words too
        build_and_save(
            texts,
            d / "model",
            {
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "max_position_embeddings": 2048,
            },
        )
        out = lm_eval.simple_evaluate(
            model="hf",
            model_args={"pretrained": str(d / "model"), "max_length": 2048},
            tasks=specs,
            batch_size=8,
            device="cpu",
            limit=LIMIT,
            log_samples=True,
            apply_chat_template=True,
            gen_kwargs={"max_gen_toks": 16},
            task_manager=TaskManager(include_defaults=False),
        )
    out["_read"], out["_dir"] = read, d
    return out


def test_builtin_definitions_ran_with_their_own_metrics(evaluated):
    res = evaluated["results"]
    assert set(res) == {leaf for name in RUN for leaf in builtin_leaves(name)} | {"bbh"}
    for name in RUN:
        assert set(builtin_metrics(name)) <= set(res[name]), name
        score, stderr = builtin_score(evaluated, name, builtin_metrics(name)[0])
        assert 0.0 <= score <= 1.0, name
        assert stderr is None or stderr >= 0.0
    for name, r in res.items():
        assert all(0.0 <= v <= 1.0 for k, v in r.items() if "," in k and "stderr" not in k), name
    shots = evaluated["n-shot"]
    assert (
        shots["gsm8k"],
        shots["leaderboard_mmlu_pro"],
        shots["bbh_cot_fewshot_snarks"],
        shots["ifeval"],
        shots["piqa"],
    ) == (5, 5, 3, 0, 0)  # the definitions' own few-shot counts
    # ifeval's instruction checks ran, including NLTK's sentence splitter from the local punkt_tab
    assert len(evaluated["samples"]["ifeval"]) == len(IFEVAL)
    assert {"prompt_level_strict_acc", "inst_level_strict_acc"} <= set(evaluated["samples"]["ifeval"][0])


def test_group_score_is_lm_evals_sample_weighted_aggregate(evaluated):
    res, n = evaluated["results"], evaluated["n-samples"]
    leaves = builtin_leaves("bbh")
    assert leaves == [f"bbh_cot_fewshot_{s}" for s in BBH_SUBTASKS]
    sizes = {t: n[t]["effective"] for t in leaves}
    assert sizes["bbh_cot_fewshot_boolean_expressions"] == 2 and sum(sizes.values()) == 28
    metric = "exact_match,get-answer"
    mean = sum(res[t][metric] * sizes[t] for t in leaves) / sum(sizes.values())
    assert builtin_score(evaluated["results"], "bbh", metric)[0] == pytest.approx(mean)
    assert res["bbh"]["sample_len"] == 28
    with pytest.raises(KeyError, match=r"no 'acc,none' for 'bbh'; it reported \['exact_match,get-answer'\]"):
        builtin_score(evaluated, "bbh", "acc,none")
    assert builtin_score({"results": {}}, "bbh", metric) == (None, None)  # a skipped cell


def test_real_prompts_and_multiple_choice_scoring(evaluated):
    samples = evaluated["samples"]
    gsm = samples["gsm8k"][0]
    prompt = gsm["arguments"][0][0]  # (context, generation kwargs) of the one request
    assert prompt.count("Question:") == 6  # five shots from the local train split, then the item
    assert prompt.startswith("<|user|>")  # through the model's chat template
    n_choices = {"arc_challenge": 4, "hellaswag": 4, "piqa": 2, "leaderboard_mmlu_pro": 10}
    for name, n in n_choices.items():
        rows = [r for r in samples[name] if r["filter"] == "none"]
        assert len(rows) == LIMIT
        for r in rows:
            lls = [x[0] for x in r["filtered_resps"]]
            assert len(lls) == n
            gold = "ABCDEFGHIJ".index(r["target"]) if name == "leaderboard_mmlu_pro" else int(r["target"])
            assert r["acc"] == float(max(range(n), key=lambda i: lls[i]) == gold)
    assert "Question:" in json.dumps(samples["piqa"][0]["arguments"])  # piqa's own prompt template
    mmlu = samples["leaderboard_mmlu_pro"][0]["arguments"][0][0]
    assert mmlu.count("Answer:") == 6 and "J. " in mmlu  # five validation shots, ten lettered options
    # bbh: the CoT exemplars written in lm-eval's YAML, then the local item
    bbh = samples["bbh_cot_fewshot_boolean_expressions"][0]["arguments"][0][0]
    assert "Evaluate the result of a random Boolean expression." in bbh
    assert "not ( ( not not True ) ) is" in bbh and bbh.count("So the answer is") == 3
    assert "not ( True ) and ( True ) is" in bbh
    assert samples["bbh_cot_fewshot_boolean_expressions"][0]["filter"] == "get-answer"
    assert samples["ifeval"][0]["arguments"][0][0].startswith("<|user|> Write a 300+ word summary")


def test_benchmark_files_are_the_splits_lm_eval_reads(evaluated):
    # evaluation above had nothing but these files, and indexed exactly these splits
    read = evaluated["_read"]
    for name in RUN:
        b = BUILTINS[name]
        for leaf in builtin_leaves(name):
            assert read[leaf] == set(b.splits), leaf
        files = benchmark_files(name, evaluated["_dir"] / "data" / name)
        assert all(p.is_file() for p in files.values())
        on_disk = {p for p in (evaluated["_dir"] / "data" / name).rglob("*") if p.is_file()}
        assert on_disk == set(files.values())
    # and every supported task's table entry is what lm-eval's YAML says
    for name, b in BUILTINS.items():
        path = tasks_dir() / b.yaml
        assert path.is_file(), name
        if b.is_group:
            g = load_definition(name, resolve_func=False)
            assert g["group"] == name and g["task"] == builtin_leaves(name)
            assert [a["metric"] + "," + (a.get("filter_list") or "none") for a in g["aggregate_metric_list"]] == list(
                b.metrics
            )
        for leaf in builtin_leaves(name):
            cfg = load_definition(leaf, resolve_func=False)
            assert cfg["task"] == leaf
            assert sorted(read_splits(cfg)) == sorted(b.splits), leaf
    assert benchmark_files("bbh", "D")["snarks/test"] == Path("D/snarks/test.jsonl")
    assert sorted(benchmark_files("ifeval", "D")) == [
        "nltk_data/tokenizers/punkt_tab/english/" + f
        for f in ("abbrev_types.txt", "collocations.tab", "ortho_context.tab", "sent_starters.txt")
    ] + ["train"]


def test_ifeval_sentence_splitter_is_the_local_punkt_tab(evaluated):
    import nltk
    from lm_eval.tasks.ifeval import instructions_util

    local = evaluated["_dir"] / "data" / "ifeval" / "nltk_data"
    assert (
        Path(str(nltk.data.find("tokenizers/punkt_tab/english/"))).resolve()
        == (local / "tokenizers" / "punkt_tab" / "english").resolve()
    )
    assert instructions_util.count_sentences("Dr. Smith went home. He was tired. It rained.") == 3


def test_missing_split_is_named(tmp_path):
    with pytest.raises(
        ValueError, match=r"task 'gsm8k' reads splits \['test', 'train'\]; no local file for \['train'\]"
    ):
        builtin_task_config("gsm8k", {"test": tmp_path / "x.jsonl"})
    with pytest.raises(FileNotFoundError, match=r"built-in task 'piqa' reads local files that are not there"):
        builtin_specs("piqa", tmp_path, None)
    with pytest.raises(KeyError, match="no local-data definition for built-in task 'mmlu'"):
        benchmark_files("mmlu", tmp_path)


def test_num_fewshot_overrides_the_definition(tmp_path):
    write_benchmark("bbh", tmp_path)
    (group,) = builtin_specs("bbh", tmp_path, 1)
    assert {t.config.num_fewshot for t in group.get_all_tasks()} == {1}
    assert group.aggregate_metric_list[0].filter_list == ["get-answer"]
