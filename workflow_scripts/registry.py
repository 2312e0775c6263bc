"""The lm-eval built-in tasks the study supports, as lm-eval 0.4.13 defines them.

One fixed table (``BUILTINS``): each task's YAML under ``lm_eval/tasks``, the splits lm-eval
reads, the dataset's columns, the metrics lm-eval reports and, for a group such as ``bbh``,
its subtasks (``BBH_SUBTASKS``). It loads nothing, so it is cheap enough for Snakemake's DAG
building; tests/test_builtin_tasks.py checks it against lm-eval's own definitions.
:mod:`workflow_scripts.builtin_tasks` runs these tasks on local files.
"""

from __future__ import annotations

from dataclasses import dataclass

BBH_SUBTASKS = (
    "boolean_expressions",
    "causal_judgement",
    "date_understanding",
    "disambiguation_qa",
    "dyck_languages",
    "formal_fallacies",
    "geometric_shapes",
    "hyperbaton",
    "logical_deduction_five_objects",
    "logical_deduction_seven_objects",
    "logical_deduction_three_objects",
    "movie_recommendation",
    "multistep_arithmetic_two",
    "navigate",
    "object_counting",
    "penguins_in_a_table",
    "reasoning_about_colored_objects",
    "ruin_names",
    "salient_translation_error_detection",
    "snarks",
    "sports_understanding",
    "temporal_sequences",
    "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects",
    "tracking_shuffled_objects_three_objects",
    "web_of_lies",
    "word_sorting",
)


@dataclass(frozen=True)
class Builtin:
    """One supported built-in task or group, as lm-eval 0.4.13 defines it."""

    yaml: str  # the task's (group's) YAML, relative to lm_eval/tasks
    splits: tuple[str, ...]  # the splits lm-eval reads (per subtask for a group)
    columns: tuple[str, ...]  # the dataset's columns (its schema on the hub)
    metrics: tuple[str, ...]  # keys lm-eval reports ("metric,filter"); a group: its aggregate
    subtasks: tuple[str, ...] = ()  # a group: subtask short names; YAML = dir of yaml / {short}.yaml
    prefix: str = ""  # a group: lm-eval task name of a subtask = prefix + short

    @property
    def is_group(self) -> bool:
        return bool(self.subtasks)

    def leaves(self, name: str) -> dict[str, str]:
        """lm-eval task name -> folder under data_dir ('' for a single task)."""
        if not self.is_group:
            return {name: ""}
        return {self.prefix + s: s for s in self.subtasks}


_MC = ("acc,none", "acc_norm,none")
_ARC = ("id", "question", "choices", "answerKey")
_BBH = dict(splits=("test",), columns=("input", "target"), subtasks=BBH_SUBTASKS)

BUILTINS: dict[str, Builtin] = {
    "gsm8k": Builtin(
        "gsm8k/gsm8k.yaml",
        ("test", "train"),
        ("question", "answer"),
        ("exact_match,strict-match", "exact_match,flexible-extract"),
    ),
    "arc_easy": Builtin("arc/arc_easy.yaml", ("test", "train"), _ARC, _MC),
    "arc_challenge": Builtin("arc/arc_challenge.yaml", ("test", "train"), _ARC, _MC),
    "hellaswag": Builtin(
        "hellaswag/hellaswag.yaml",
        ("validation", "train"),
        ("ind", "activity_label", "ctx_a", "ctx_b", "ctx", "endings", "source_id", "split", "split_type", "label"),
        _MC,
    ),
    "piqa": Builtin("piqa/piqa.yaml", ("validation", "train"), ("goal", "sol1", "sol2", "label"), _MC),
    "ifeval": Builtin(
        "ifeval/ifeval.yaml",
        ("train",),
        ("key", "prompt", "instruction_id_list", "kwargs"),
        (
            "prompt_level_strict_acc,none",
            "inst_level_strict_acc,none",
            "prompt_level_loose_acc,none",
            "inst_level_loose_acc,none",
        ),
    ),
    "leaderboard_mmlu_pro": Builtin(
        "leaderboard/mmlu_pro/mmlu_pro.yaml",
        ("test", "validation"),
        ("question_id", "question", "options", "answer", "answer_index", "cot_content", "category", "src"),
        ("acc,none",),
    ),
    # BBH 3-shot as the paper counts it: lm-eval's `bbh` is the chain-of-thought few-shot group
    "bbh": Builtin("bbh/cot_fewshot/_bbh.yaml", metrics=("exact_match,get-answer",), prefix="bbh_cot_fewshot_", **_BBH),
    "bbh_cot_fewshot": Builtin(
        "bbh/cot_fewshot/_bbh_cot_fewshot.yaml", metrics=("exact_match,get-answer",), prefix="bbh_cot_fewshot_", **_BBH
    ),
    "bbh_fewshot": Builtin(
        "bbh/fewshot/_bbh_fewshot.yaml", metrics=("exact_match,none",), prefix="bbh_fewshot_", **_BBH
    ),
}


def builtin(name: str) -> Builtin:
    try:
        return BUILTINS[name]
    except KeyError:
        raise KeyError(f"no local-data definition for built-in task {name!r}; supported: {sorted(BUILTINS)}") from None
