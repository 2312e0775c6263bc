"""The analysis units (workflow_scripts/units.py): task groups, the pre-registered primary
comparison, and the refusals of an `analysis:` section that names its units ambiguously."""

import copy

import pytest
from conftest import REPO, load_yaml

from workflow_scripts.config import load_study
from workflow_scripts.config_schema import ConfigError
from workflow_scripts.inputs import evaluate_jobs
from workflow_scripts.units import check_analysis, resolve_units

TASKS = {
    "gsm8k": {"category": "reasoning"},
    "arc_challenge": {"category": "reasoning"},
    "arc_easy": {"category": "reasoning"},
    "bbh": {"category": "reasoning"},
    "hellaswag": {"category": "pattern"},
    "ifeval": {"category": "pattern"},
    "piqa": {"category": "pattern"},
}
PAPER = {
    "task_groups": {"arc": ["arc_easy", "arc_challenge"]},
    "primary": {"reasoning": ["arc", "gsm8k"], "pattern": ["hellaswag", "ifeval"]},
}


def units(analysis, tasks=TASKS):
    return [(u["unit"], u["tasks"], u["category"], u["role"]) for u in resolve_units(tasks, analysis)]


def test_the_papers_comparison_primary_units_first_then_exploratory_in_task_order():
    assert units(PAPER) == [
        ("arc", ["arc_easy", "arc_challenge"], "reasoning", "primary"),
        ("gsm8k", ["gsm8k"], "reasoning", "primary"),
        ("hellaswag", ["hellaswag"], "pattern", "primary"),
        ("ifeval", ["ifeval"], "pattern", "primary"),
        ("bbh", ["bbh"], "reasoning", "exploratory"),
        ("piqa", ["piqa"], "pattern", "exploratory"),
    ]


def test_without_primary_every_unit_is_exploratory_and_a_group_stands_where_its_first_member_is():
    assert units(None) == [(t, [t], TASKS[t]["category"], "exploratory") for t in TASKS]
    groups = {"task_groups": {"arc": ["arc_easy", "arc_challenge"]}}
    assert units(groups) == [
        ("gsm8k", ["gsm8k"], "reasoning", "exploratory"),
        ("arc", ["arc_easy", "arc_challenge"], "reasoning", "exploratory"),  # arc_challenge's place
        ("bbh", ["bbh"], "reasoning", "exploratory"),
        ("hellaswag", ["hellaswag"], "pattern", "exploratory"),
        ("ifeval", ["ifeval"], "pattern", "exploratory"),
        ("piqa", ["piqa"], "pattern", "exploratory"),
    ]
    assert units({"primary": {}}) == units(None)


def test_primary_order_is_reasoning_then_pattern_whatever_the_key_order():
    swapped = {"task_groups": PAPER["task_groups"], "primary": {"pattern": ["ifeval"], "reasoning": ["gsm8k"]}}
    assert [u[0] for u in units(swapped)][:2] == ["gsm8k", "ifeval"]


def test_a_group_in_primary_takes_its_category_there_even_across_member_categories():
    analysis = {"task_groups": {"mixed": ["bbh", "piqa"]}, "primary": {"pattern": ["mixed"]}}
    assert units(analysis)[0] == ("mixed", ["bbh", "piqa"], "pattern", "primary")


@pytest.mark.parametrize(
    "change,key,says",
    [
        ({"task_groups": {"arc": ["arc_easy", "arc_eazy"]}}, "analysis.task_groups.arc", "'arc_eazy' is not a task"),
        ({"primary": {"reasoning": ["gsm8"]}}, "analysis.primary.reasoning", "'gsm8' is neither a task nor a task"),
        ({"task_groups": {"arc": ["arc_easy"]}}, "analysis.task_groups.arc", "at least 2 member tasks"),
        ({"task_groups": {"arc": ["arc_easy", "arc_easy"]}}, "analysis.task_groups.arc", "listed twice"),
        ({"task_groups": {"bbh": ["arc_easy", "arc_challenge"]}}, "analysis.task_groups.bbh", "also a task"),
        (
            {"task_groups": {"arc": ["arc_easy", "arc_challenge"], "arc2": ["arc_easy", "gsm8k"]}},
            "analysis.task_groups.arc2",
            "already a member of the group 'arc'",
        ),
        (
            {"task_groups": {"arc": ["arc_easy", "arc_challenge"], "both": ["arc", "gsm8k"]}},
            "analysis.task_groups.both",
            "groups do not nest",
        ),
        ({"primary": {"reasoning": ["gsm8k"], "pattern": ["gsm8k"]}}, "analysis.primary.pattern", "under both"),
        ({"primary": {"reasoning": ["gsm8k", "gsm8k"]}}, "analysis.primary.reasoning", "listed twice"),
        ({"primary": {"knowledge": ["gsm8k"]}}, "analysis.primary.knowledge", "not a category"),
        ({"primary": {"reasoning": []}}, "analysis.primary.reasoning", "no units"),
        (
            {"task_groups": PAPER["task_groups"], "primary": {"reasoning": ["arc", "arc_easy"]}},
            "analysis.primary.reasoning",
            "member of the task group 'arc', which is listed too",
        ),
        (
            {"task_groups": PAPER["task_groups"], "primary": {"reasoning": ["arc_easy"]}},
            "analysis.primary.reasoning",
            "list the group 'arc'",
        ),
        (
            {"task_groups": {"mixed": ["bbh", "piqa"]}},
            "analysis.task_groups.mixed",
            "different categories (pattern, reasoning)",
        ),
    ],
)
def test_an_ambiguous_analysis_is_refused_naming_the_key_and_the_fix(change, key, says):
    with pytest.raises(ConfigError) as err:
        check_analysis(TASKS, change)
    assert f"config error at {key}:" in str(err.value) and says in str(err.value)
    with pytest.raises(ConfigError):  # resolve_units checks first
        resolve_units(TASKS, change)


def test_load_study_refuses_a_bad_analysis_before_any_job():
    cfg = load_yaml(REPO / "config.yaml")
    cfg["analysis"]["primary"]["reasoning"].append("arc_easy")
    with pytest.raises(ConfigError, match="config error at analysis.primary.reasoning: 'arc_easy' is a member"):
        load_study(cfg)
    cfg = load_yaml(REPO / "config.yaml")
    cfg["analysis"]["groups"] = {}
    with pytest.raises(ConfigError, match="config error at analysis: .*Allowed keys here: primary, task_groups"):
        load_study(cfg)


def test_the_shipped_studies_name_the_papers_comparison():
    for configfile in ("config.yaml", "studies/smollm2-sizes.yaml"):
        study = load_study(load_yaml(REPO / configfile))
        got = [(u["unit"], u["role"]) for u in resolve_units(study.tasks, study.config["analysis"])]
        assert got[:4] == [("arc", "primary"), ("gsm8k", "primary"), ("hellaswag", "primary"), ("ifeval", "primary")]
        assert {u for u, role in got[4:]} == {"bbh", "piqa", "leaderboard_mmlu_pro"}
    demo = load_study(load_yaml(REPO / "studies/demo.yaml"))
    assert [u["unit"] for u in resolve_units(demo.tasks, demo.config["analysis"]) if u["role"] == "primary"] == [
        "arith",
        "compare",
        "sequence",
        "format",
    ]


def test_analysis_enters_no_training_spec_and_no_evaluate_params():
    cfg = load_yaml(REPO / "config.yaml")
    other = copy.deepcopy(cfg)
    other["analysis"] = {"primary": {"reasoning": ["bbh"], "pattern": ["piqa"]}}
    without = copy.deepcopy(cfg)
    del without["analysis"]
    studies = [load_study(c) for c in (cfg, other, without)]
    specs = [{c.run_id: s.training_spec(c) for c in s.cells} for s in studies]
    jobs = [evaluate_jobs(s) for s in studies]
    assert specs[0] == specs[1] == specs[2]
    assert jobs[0] == jobs[1] == jobs[2]
