"""The evaluate job's shortcuts through lm-eval (``evaluate.lm_eval_shortcuts``) change no number,
no prompt and no record: lm-eval's templates render the same text, its environment record
(torch's ``collect_env``, run early in a thread) is its own, and a whole evaluation (every
synthetic task kind, on a tiny model) is identical with and without them. A newer lm-eval that
renames what they replace fails here first."""

import json
import re

import pytest
from conftest import small_study, tiny_setup

from workflow_scripts.builtin_tasks import load_definition
from workflow_scripts.evaluate import early_env_info, lm_eval_shortcuts
from workflow_scripts.lmeval_tasks import SEED, task_specs

DOCS = [
    {"question": "tom has 7 coins , finds 3 .", "answer": "7 + 3 = 10 #### 10", "choices": {"text": ["a", "b"]}},
    {"question": "x", "answer": "#### -4", "choices": {"text": ["one", "two", "three"]}},
]


def test_templates_render_as_lm_eval_renders_them():
    import lm_eval.utils

    gsm8k = load_definition("gsm8k")
    templates = [
        "{{question}}",
        "{{answer.split('####')[-1].strip()}}",
        "{{choices.text}}",
        "Question: {{question}}\nAnswer:",
        "{{question | regex_replace('[0-9]+', 'N')}}",
        gsm8k["doc_to_text"],
        gsm8k["doc_to_target"],
    ]
    plain = lm_eval.utils.apply_template
    expected = [plain(t, d) for t in templates for d in DOCS]
    with lm_eval_shortcuts():
        assert lm_eval.utils.apply_template is not plain
        assert [lm_eval.utils.apply_template(t, d) for t in templates for d in DOCS] == expected
        # twice: the second rendering of each template is from the compiled one
        assert [lm_eval.utils.apply_template(t, d) for t in templates for d in DOCS] == expected
        with pytest.raises(Exception) as fast_error:
            lm_eval.utils.apply_template("{{missing}}", DOCS[0])
    with pytest.raises(Exception) as plain_error:
        plain("{{missing}}", DOCS[0])
    assert type(fast_error.value) is type(plain_error.value)
    assert lm_eval.utils.apply_template is plain


def test_the_environment_record_is_lm_evals_own():
    import lm_eval.evaluator
    import torch.utils.collect_env

    plain = torch.utils.collect_env.get_pretty_env_info
    expected: dict = {}
    lm_eval.evaluator.add_env_info(expected)
    got: dict = {"kept": 1}
    with lm_eval_shortcuts():
        assert torch.utils.collect_env.get_pretty_env_info is not plain
        lm_eval.evaluator.add_env_info(got)
    assert got.pop("kept") == 1
    assert got == expected and "PyTorch version" in got["pretty_env_info"]
    assert torch.utils.collect_env.get_pretty_env_info is plain


def test_a_failing_environment_probe_is_recorded_as_lm_eval_records_it(monkeypatch):
    import lm_eval.evaluator
    import torch.utils.collect_env

    def broken():
        raise RuntimeError("no lscpu here")

    monkeypatch.setattr(torch.utils.collect_env, "get_pretty_env_info", broken)
    expected: dict = {}
    lm_eval.evaluator.add_env_info(expected)
    got: dict = {}
    with lm_eval_shortcuts(early_env_info()):
        lm_eval.evaluator.add_env_info(got)
    assert got == expected and got["pretty_env_info"] == "no lscpu here"


def test_an_evaluation_is_identical_with_the_shortcuts(tmp_path):
    import lm_eval
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import handle_non_serializable

    cfg = small_study()
    made = tiny_setup(tmp_path, cfg, n_train=20, n_test=12)
    tasks = {name: t for name, t in cfg["tasks"].items() if t.get("synthetic")}
    assert {t["synthetic"] for t in tasks.values()} >= {"arithmetic", "compare", "sequence", "format"}

    def evaluate():
        out = lm_eval.simple_evaluate(
            model="hf",
            model_args={"pretrained": str(made["base"]), "dtype": "float32"},
            tasks=task_specs(tasks, made["test_files"]),
            batch_size=8,
            device="cpu",
            apply_chat_template=True,
            log_samples=True,
            task_manager=TaskManager(include_defaults=False),
            random_seed=SEED,
            numpy_random_seed=SEED,
            torch_random_seed=SEED,
            fewshot_random_seed=SEED,
        )
        for timing in ("date", "start_time", "end_time", "total_evaluation_time_seconds"):
            out.pop(timing, None)
        text = json.dumps(out, default=handle_non_serializable, sort_keys=True)
        return re.sub(r" at 0x[0-9a-f]+", "", text)  # functions in the task configs print their address

    plain = evaluate()
    with lm_eval_shortcuts():
        fast = evaluate()
    assert fast == plain
    assert len(json.loads(plain)["samples"]) == len(tasks)
