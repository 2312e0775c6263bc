"""What a cell computes is a contract: the training spec of each cell (rule train's params, and
run.json's record), the params of each task's evaluation (rule evaluate's, one job per cell and
task) and of each built-in task's prompt check (rule check_prompts', an input of the task's
evaluations) in the shipped studies are pinned in tests/golden/specs.json.

Snakemake reruns every job whose params changed, so a new, renamed or re-valued key retrains
(or re-evaluates) every finished cell of every user's grid. Changing this file must be a
conscious act: regenerate it with

    python tests/test_contract.py --update

and say in the commit which cells retrain (or re-evaluate) and why.
"""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
GOLDEN = REPO / "tests" / "golden" / "specs.json"
STUDIES = ["studies/demo.yaml", "config.yaml", "studies/smoltulu-1.7b.yaml"]


def contract(configfile: str) -> dict:
    """The params Snakemake records per job of a study: every cell's spec, each task's
    evaluation params (the same for every cell) and each built-in task's check params."""
    import yaml

    from workflow_scripts.config import load_study
    from workflow_scripts.inputs import evaluate_jobs

    study = load_study(yaml.safe_load((REPO / configfile).read_text()), base_dir=REPO)
    jobs = evaluate_jobs(study)
    return {
        "train": {c.run_id: study.training_spec(c) for c in study.cells},
        "evaluate": {task: job["params"] for task, job in jobs.items()},
        "check_prompts": {task: job["check_params"] for task, job in jobs.items() if job["check_params"]},
    }


def current() -> dict:
    return json.loads(json.dumps({f: contract(f) for f in STUDIES}, sort_keys=True))


def differences(old, new, path="") -> list[str]:
    """Every key path where ``new`` differs from ``old``: added, removed or changed."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            where = f"{path}.{k}" if path else k
            if k not in new:
                out.append(f"removed {where}")
            elif k not in old:
                out.append(f"added {where}")
            else:
                out.extend(differences(old[k], new[k], where))
        return out
    return [] if old == new else [f"changed {path}: {old!r} -> {new!r}"]


def test_shipped_studies_compute_what_they_computed():
    diff = differences(json.loads(GOLDEN.read_text()), current())
    assert not diff, (
        f"{len(diff)} change(s) to what cells compute; each retrains or re-evaluates the cells it "
        "touches in every finished study. If that is the point, run `python tests/test_contract.py "
        "--update` and name the cells and the reason in the commit:\n" + "\n".join(diff[:40])
    )


def test_an_added_spec_key_is_caught(monkeypatch):
    from workflow_scripts import spec

    original = spec.training_spec  # the one owner of the spec (Study.training_spec calls it)
    monkeypatch.setattr(spec, "training_spec", lambda study, cell: {**original(study, cell), "new_key": 1})
    diff = differences(json.loads(GOLDEN.read_text()), current())
    assert "added studies/demo.yaml.train.tiny-llama/sft/r1e-04_bs8_s0.new_key" in diff
    assert len(diff) == sum(len(v["train"]) for v in json.loads(GOLDEN.read_text()).values())


def test_an_added_score_setting_is_caught(monkeypatch):
    from workflow_scripts import evaluations

    monkeypatch.setattr(evaluations, "SCORE_SETTINGS", (*evaluations.SCORE_SETTINGS, "batch_size"))
    diff = differences(json.loads(GOLDEN.read_text()), current())
    assert "added studies/demo.yaml.evaluate.arith.scoring.batch_size" in diff
    assert len(diff) == sum(len(v["evaluate"]) for v in json.loads(GOLDEN.read_text()).values())


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        raise SystemExit(__doc__)
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
