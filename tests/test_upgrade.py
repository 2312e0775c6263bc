"""A study finished with an older commit of this code stays finished under the current code.

What this guarantees: a user who ran a study with the code of commit ``BASE`` and then updates
their checkout (a ``git pull``, a refactor of library modules, entry scripts, rule files or the
Snakefile) finds ``snakemake -n`` has nothing to do: no cell retrains, no evaluation reruns, and
the tables and figures are remade only to make a table or figure the current code adds
(``NEW_TABLE_OUTPUTS``: nothing else may be planned). The test

1. takes BASE's tree from this repository's own git history (``git archive``) into a checkout
   folder, and runs a small study (one ratio, one batch size, one seed: data, tiny model,
   train, evaluate, aggregate, statistics, plots) to completion with BASE's Snakefile, rules
   and ``workflow_scripts``, using the study config BASE's own ``studies/demo.yaml`` gives
   (the config a user of that commit had; ``conftest.small_study`` shrinks it);
2. checks that every Python process of that run (Snakemake itself and each job's script)
   imported ``workflow_scripts`` from the checkout, never from this working tree (a sitecustomize
   on PYTHONPATH records each process's ``workflow_scripts`` modules at exit), and that both
   runs read the checkout's own workflow profile ``profiles/default`` (which leaves out
   Snakemake's code trigger), found beside the Snakefile as a user's run finds it;
3. then updates the checkout in place to the current code as git does (files the current tree
   lacks deleted, new and changed files written with new mtimes, unchanged files untouched;
   the current tree is this working tree's tracked and untracked-but-not-ignored files) and
   asserts the current code's ``snakemake -n`` on the same study folder and config plans no
   job but those. On failure the message names each planned job with Snakemake's reason (params, set of
   input files, updated input, code) and the ``--summary`` rows whose status is not ok.

Why in place, and not BASE in one folder and this repository in another: Snakemake records a
job's input paths, and rules aggregate and plots read the published reference CSV through
``workflow.source_path``, an absolute path inside the checkout, so a study continued from a
checkout at another path remakes its tables and figures (never its cells). An update in place,
the case this contract is about, keeps that path, unless a refactor moves the rule file that
names it, which this test then catches. Snakemake runs with the study folder as its working
directory: it looks for ``profiles/default`` relative to the working directory before the
Snakefile's folder, so from the repository root BASE's run would read this tree's profile.

Policy for BASE: it moves forward only together with a deliberate contract change, that is
when ``tests/golden/specs.json`` is updated with ``python tests/test_contract.py --update`` in
a commit that names which cells retrain and why. Studies finished before such a change are
expected to rerun, so BASE then moves to the commit that made it (in the commit right after
it, since a commit cannot name its own sha; the failure message says whether the golden file
differs from BASE's). Any other change (a refactor, a new module, moved helpers, renamed entry
scripts or rule files) must keep this test passing with BASE unchanged.

Without BASE in the history (a shallow clone, an exported tarball) the test is skipped; with
``LRBS_REQUIRE_UPGRADE_BASE=1`` it fails instead.
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import conftest
import pandas as pd
import pytest
from conftest import REPO, small_study, write_config
from test_workflow import planned_jobs

# The last commit before the refactor of issue #13 (one home per concern). Moves forward only
# with a deliberate contract change: see the module docstring.
BASE = "1141e9718e4f2a4307da920500a0c5c73c267203"
REQUIRE_BASE = "LRBS_REQUIRE_UPGRADE_BASE"

# Run by every Python process started with PYTHONPATH pointing at its folder: at exit, it
# appends which file each loaded workflow_scripts module came from.
SITECUSTOMIZE = """\
import atexit, json, os, sys

def _lrbs_record_imports():
    mods = {name: getattr(mod, "__file__", None) for name, mod in list(sys.modules.items())
            if name == "workflow_scripts" or name.startswith("workflow_scripts.")}
    if mods:
        with open(os.environ["LRBS_UPGRADE_IMPORTS"], "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "argv": sys.argv[:2], "modules": mods}) + "\\n")

atexit.register(_lrbs_record_imports)
"""

# The jobs of the small study, each a script in workflow_scripts/entry/ at BASE
STUDY_RULES = {
    "make_task_data",
    "make_train_data",
    "build_tiny_model",
    "train",
    "evaluate",
    "aggregate",
    "statistics",
    "plots",
}
# their entry scripts: rule statistics runs entry/analyze.py, every other rule its namesake
ENTRY_SCRIPTS = STUDY_RULES - {"statistics"} | {"analyze"}


def _git(*args, **kw):
    return subprocess.run(["git", "-C", str(REPO), *args], check=False, capture_output=True, timeout=120, **kw)


def _base_tree_or_skip() -> bytes:
    """BASE's whole tree as a tar archive, or skip (fail with LRBS_REQUIRE_UPGRADE_BASE=1)."""
    reason = None
    if shutil.which("git") is None:
        reason = "git is not installed"
    elif _git("rev-parse", "--is-inside-work-tree").returncode != 0:
        reason = f"{REPO} is not a git checkout"
    elif _git("cat-file", "-e", f"{BASE}^{{commit}}").returncode != 0:
        shallow = _git("rev-parse", "--is-shallow-repository", text=True).stdout.strip() == "true"
        reason = f"commit {BASE} (the upgrade test's base) is not in this repository's history" + (
            " (a shallow clone: fetch with --unshallow)" if shallow else ""
        )
    if reason:
        if os.environ.get(REQUIRE_BASE) == "1":
            pytest.fail(f"{reason}; {REQUIRE_BASE}=1 makes this a failure")
        pytest.skip(reason)
    archive = _git("archive", "--format=tar", BASE)
    assert archive.returncode == 0, archive.stderr.decode()
    return archive.stdout


def _current_files() -> list[str]:
    """This working tree as a commit of it would hold it: tracked and untracked files that git
    does not ignore (the refactor in progress included)."""
    listed = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard")
    assert listed.returncode == 0, listed.stderr.decode()
    names = [n for n in listed.stdout.decode().split("\0") if n]
    return [n for n in names if (REPO / n).is_file() and not (REPO / n).is_symlink()]


def _update_in_place(checkout: Path, old_files: list[str]) -> list[str]:
    """What a `git pull` does to the checkout: files gone from the current tree are deleted,
    new and changed ones written (with new mtimes), unchanged ones left alone; untracked files
    (__pycache__) stay. Returns the names written or deleted."""
    current = _current_files()
    touched = sorted(set(old_files) - set(current))
    for name in touched:
        (checkout / name).unlink()
    for name in current:
        src, dst = REPO / name, checkout / name
        if dst.is_file() and dst.read_bytes() == src.read_bytes():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
        touched.append(name)
    return sorted(touched)


def _snakemake(checkout: Path, workdir: Path, configfile: Path, imports: Path, *args, timeout=600):
    """Snakemake with the checkout's Snakefile on the study folder, from the study folder (so
    that the workflow profile is the checkout's, found beside its Snakefile)."""
    site = imports.parent / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(
        os.environ,
        PYTHONHASHSEED="0",
        LRBS_UPGRADE_IMPORTS=str(imports),
        PYTHONPATH=os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p),
    )
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(checkout / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(configfile),
        *args,
    ]
    proc = subprocess.run(cmd, check=False, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    return proc, proc.stdout + proc.stderr


def _imports(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _assert_imported_from(records: list[dict], checkout: Path, what: str) -> None:
    assert records, f"{what}: no process recorded its workflow_scripts imports"
    root = checkout.resolve()
    wrong = {
        (r["argv"][-1] if r["argv"] else "?", name, file)
        for r in records
        for name, file in r["modules"].items()
        if file is None or not Path(file).resolve().is_relative_to(root)
    }
    assert not wrong, f"{what}: workflow_scripts modules not from {root}:\n" + "\n".join(map(str, sorted(wrong)))


def _script_names(records: list[dict]) -> set[str]:
    """Entry scripts whose job processes recorded imports (Snakemake runs a copy of each as
    .snakemake/scripts/tmpXXXX.<name>.py)."""
    names = set()
    for r in records:
        m = re.search(r"\.snakemake/scripts/tmp[^.]*\.(\w+)\.py$", r["argv"][0] if r["argv"] else "")
        if m:
            names.add(m.group(1))
    return names


def _modules(names: list[str]) -> set[str]:
    """Module names of the workflow_scripts files among ``names``."""
    return {n[:-3].replace("/", ".") for n in names if n.startswith("workflow_scripts/") and n.endswith(".py")}


def _reasons(dry_run_output: str) -> list[str]:
    """`rule (wildcards): reason` for every job in a `snakemake -n` listing."""
    out, current = [], None
    for line in dry_run_output.splitlines():
        s = line.strip()
        m = re.match(r"^(?:local)?rule (\w+):$", s)
        if m:
            current = [m.group(1), "", ""]
            out.append(current)
        elif current and s.startswith("wildcards:"):
            current[1] = s[len("wildcards:") :].strip()
        elif current and s.startswith("reason:"):
            current[2] = s[len("reason:") :].strip()
    return [f"{rule} ({wc}): {reason}" if wc else f"{rule}: {reason}" for rule, wc, reason in out]


def _diagnostics(checkout, workdir, configfile, imports, dry_run_output, changed) -> str:
    summary, _ = _snakemake(checkout, workdir, configfile, imports, "--summary", timeout=300)
    rows = [line for line in summary.stdout.splitlines()[1:] if line.count("\t") >= 4 and line.split("\t")[4] != "ok"]
    return (
        "a study finished with BASE's code would rerun under the current code.\n"
        "Planned jobs (rule (wildcards): Snakemake's reason):\n  "
        + "\n  ".join(_reasons(dry_run_output))
        + "\n\n`snakemake --summary`, files whose status is not ok (file, date, rule, log, status, plan):\n  "
        + "\n  ".join(rows or ["(none)"])
        + f"\n\nFiles the update from BASE wrote or deleted ({len(changed)}):\n  "
        + "\n  ".join(changed)
        + (
            "\n\ntests/golden/specs.json differs from BASE's: if that contract change is meant, old studies"
            " rerun by design and BASE moves to the commit that made it (see this module's docstring)"
            if "tests/golden/specs.json" in changed
            else "\n\ntests/golden/specs.json is BASE's: no contract change was declared, so nothing should rerun"
        )
        + f"\n\nTail of the dry run:\n{dry_run_output[-6000:]}"
    )


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory):
    """A small study finished with BASE's code, its checkout then updated in place to the
    current code: (checkout, study folder, config, BASE's files the update wrote or deleted,
    folder for import records)."""
    archive = _base_tree_or_skip()
    tmp_path = tmp_path_factory.mktemp("upgrade")
    checkout, study = tmp_path / "checkout", tmp_path / "study"
    checkout.mkdir()
    study.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        old_files = [m.name for m in tar.getmembers() if m.isfile()]
        tar.extractall(checkout, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))

    # the config a user of BASE had: BASE's demo, shrunk as the suite's small study
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conftest, "REPO", checkout)
        cfg = small_study(ratios=(1e-3,), batch_sizes=(4,), seeds=(0,), train_examples=16)
    cfg["data"]["synthetic"].update({"train_per_task": 20, "eval_per_task": 4})
    configfile = write_config(cfg, study / "study.yaml")
    profile = f"Using workflow specific profile {checkout / 'profiles' / 'default'} "

    # 1. the whole study with BASE's code
    old_imports = tmp_path / "imports-base.jsonl"
    proc, out = _snakemake(checkout, study, configfile, old_imports, "--cores", "2")
    assert proc.returncode == 0, f"BASE's run failed ({proc.returncode}):\n{out[-8000:]}"
    assert profile in out, out[:2000]
    ran = {rule for rule, _ in planned_jobs(out)}
    assert STUDY_RULES <= ran, ran
    old_records = _imports(old_imports)
    _assert_imported_from(old_records, checkout, "BASE's run")
    assert ENTRY_SCRIPTS <= _script_names(old_records), _script_names(old_records)
    # e.g. workflow_scripts.memory: a module of the current tree only was not imported
    new_only = _modules(_current_files()) - _modules(old_files)
    assert not new_only & {name for r in old_records for name in r["modules"]}

    # 2. the checkout updated in place to the current code
    changed = _update_in_place(checkout, old_files)
    return checkout, study, configfile, changed, tmp_path


def test_a_study_finished_with_base_needs_nothing_under_the_current_code(upgraded):
    checkout, study, configfile, changed, tmp_path = upgraded
    profile = f"Using workflow specific profile {checkout / 'profiles' / 'default'} "
    new_imports = tmp_path / "imports-current.jsonl"
    proc, out = _snakemake(checkout, study, configfile, new_imports, "-n", timeout=300)
    assert proc.returncode == 0, f"the current code's dry run failed ({proc.returncode}):\n{out[-8000:]}"
    assert profile in out, out[:2000]
    _assert_imported_from(_imports(new_imports), checkout, "the current code's dry run")
    unexpected = [r for r in _reasons(out) if not _remakes_only_new_tables(r)]
    if unexpected:
        pytest.fail(_diagnostics(checkout, study, configfile, new_imports, out, changed), pytrace=False)
    # what is planned (if anything) makes tables and figures the current code adds, nothing else
    assert {rule for rule, _ in planned_jobs(out)} <= {*NEW_TABLE_OUTPUTS, "all"}, out[-4000:]


# Outputs the table rules gained since BASE (issue #15: models.csv; the optima, comparison,
# exclusions and sizes tables; the optima and sizes figures; issue #16: the stability and flips
# tables, the flipped examples, the stability figure). A study finished with BASE makes them
# once, which remakes its tables and figures; no cell retrains or re-evaluates for them.
NEW_TABLE_OUTPUTS = {
    "aggregate": {"results/tables/models.csv"},
    "statistics": {
        f"results/tables/{stem}.{ext}"
        for stem in ("comparison", "optima", "exclusions", "sizes", "stability", "flips")
        for ext in ("csv", "tex", "md")
    }
    | {"results/tables/flipped_examples.jsonl"},
    "plots": {f"figures/{name}.{ext}" for name in ("optima", "sizes", "stability") for ext in ("pdf", "png")},
}


def _remakes_only_new_tables(reason: str) -> bool:
    """True for a planned job that only makes outputs in NEW_TABLE_OUTPUTS (or the aggregate
    `all` after them); `reason` is a line of :func:`_reasons`."""
    rule = reason.split(" ", 1)[0].rstrip(":")
    if rule == "all":
        return True
    m = re.search(r"Missing output files: ([^;]+)", reason)
    if rule not in NEW_TABLE_OUTPUTS or not m:
        return False
    return {f.strip() for f in m.group(1).split(",")} <= NEW_TABLE_OUTPUTS[rule]


# The tests below change the study: they run after the one above (pytest keeps file order).
LEGACY_EVAL = "results/runs/tiny-llama/sft/r1e-03_bs4_s0/eval"


def _legacy_state(study: Path) -> dict:
    """The cell's evaluation as BASE wrote it (protected: read-only): each file's bytes and mode."""
    files = sorted(p for p in (study / LEGACY_EVAL).rglob("*") if p.is_file() and "tasks" not in p.parts)
    return {str(p.relative_to(study)): (p.read_bytes(), p.stat().st_mode) for p in files}


def test_a_changed_score_setting_re_evaluates_each_task_beside_the_old_evaluation(upgraded):
    """BASE evaluated all tasks in one protected job; under the current code a new limit plans
    one evaluate job per task (none refused: they write their own files), and no training."""
    checkout, study, configfile, _, tmp_path = upgraded
    cfg = conftest.load_yaml(configfile)
    cfg["evaluation"]["limit"] = 2
    proc, out = _snakemake(checkout, study, write_config(cfg, tmp_path / "limit.yaml"), tmp_path / "i.jsonl", "-n")
    assert proc.returncode == 0, out[-6000:]
    jobs = planned_jobs(out)
    assert sorted(wc["task"] for rule, wc in jobs if rule == "evaluate") == sorted(cfg["tasks"])
    assert {rule for rule, _ in jobs} == {"evaluate", "aggregate", "statistics", "plots", "all"}


def test_a_task_added_after_the_upgrade_is_the_only_one_evaluated(upgraded):
    """Adding a benchmark (a built-in task on local files) to the study finished with BASE:
    its one evaluation per cell runs, the old evaluation of the other tasks stays as it was
    (bytes and read-only mode) and still scores them in the tables."""
    from test_builtin_tasks import write_benchmark

    checkout, study, configfile, _, tmp_path = upgraded
    before = _legacy_state(study)
    scores_before = pd.read_csv(study / "results/tables/scores.csv")
    cfg = conftest.load_yaml(configfile)
    write_benchmark("arc_challenge", tmp_path / "arc")
    cfg["tasks"]["arc_challenge"] = {"category": "reasoning", "metric": "acc,none", "data_dir": str(tmp_path / "arc")}
    added = write_config(cfg, tmp_path / "added.yaml")
    proc, out = _snakemake(checkout, study, added, tmp_path / "i.jsonl", "--cores", "2")
    assert proc.returncode == 0, out[-8000:]
    jobs = planned_jobs(out)
    assert [wc["task"] for rule, wc in jobs if rule == "evaluate"] == ["arc_challenge"]
    assert {rule for rule, _ in jobs} == {"check_prompts", "evaluate", "aggregate", "statistics", "plots", "all"}
    assert _legacy_state(study) == before
    scores = pd.read_csv(study / "results/tables/scores.csv")
    # every old score, unchanged (BASE wrote tables at 6 significant digits)
    key = ["run_id", "task", "metric"]
    both = scores_before.merge(scores, on=key, how="left", suffixes=("_base", ""))
    assert both["value"].to_numpy() == pytest.approx(both["value_base"].to_numpy(), rel=1e-5, nan_ok=True)
    assert set(scores["task"]) == set(scores_before["task"]) | {"arc_challenge"}
    proc, out = _snakemake(checkout, study, added, tmp_path / "i.jsonl", "-n")
    assert "Nothing to be done" in out, out[-4000:]
