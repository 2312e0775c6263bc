"""End to end through Snakemake: a small study trains (TRL), scores (lm-eval), aggregates
and plots; adding a ratio then reruns only that ratio's cells."""

import hashlib
import json
import re

import pandas as pd
import pytest
from conftest import REPO, small_study, snakemake, write_config

from workflow_scripts.grid import parse_run_id

TASKS = {"arith", "compare", "sequence", "format"}


def planned_jobs(dry_run_output: str) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job in a `snakemake -n` listing: Snakemake's own job list."""
    jobs, current = [], None
    for line in dry_run_output.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            current = (m.group(1), {})
            jobs.append(current)
        elif current and line.strip().startswith("wildcards:"):
            for part in line.strip()[len("wildcards:") :].split(","):
                k, v = part.strip().split("=", 1)
                current[1][k] = v
    return jobs


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    cfg = write_config(small_study(ratios=(1e-4, 1e-3)), d / "study.yaml")
    snakemake(d, cfg, "--cores", "2")
    return d


def test_tables_have_one_row_per_cell_and_task_with_parsable_ids(study_dir):
    scores = pd.read_csv(study_dir / "results/tables/scores.csv")
    prim = scores[scores["primary"]]
    assert len(prim) == 2 * len(TASKS)
    assert set(prim["task"]) == TASKS
    assert prim.groupby("run_id")["task"].nunique().eq(len(TASKS)).all()
    assert scores["value"].between(0, 1).all()
    assert set(prim[prim["category"] == "reasoning"]["task"]) == {"arith", "compare"}
    for _, row in prim.iterrows():
        cell = parse_run_id(row["run_id"])
        assert (cell.learning_rate, cell.batch_size, cell.ratio, cell.seed) == pytest.approx(
            (row["learning_rate"], row["batch_size"], row["ratio"], row["seed"])
        )
    assert sorted(prim["ratio"].unique()) == [1e-4, 1e-3]
    assert (prim["optimizer_steps"] == 24).all() and (prim["examples_seen"] == 96).all()

    pivot = pd.read_csv(study_dir / "results/tables/pivot.csv")
    assert list(pivot.columns) == [
        "model",
        "stage",
        "category",
        "task",
        "metric",
        "r=1e-04",
        "r=1e-03",
        "cells",
        "excluded",
    ]
    assert len(pivot) == len(TASKS)
    tex = (study_dir / "results/tables/pivot.tex").read_text()
    assert "\\begin{tabular}" in tex and "\\toprule" in tex
    loss = pd.read_csv(study_dir / "results/tables/loss.csv")
    assert set(loss["run_id"]) == set(prim["run_id"]) and loss["loss"].gt(0).all()
    for name in ("optima", "sizes", "split", "forest", "heatmap", "iso_ratio", "loss", "reference", "stability"):
        assert (study_dir / f"figures/{name}.pdf").read_bytes().startswith(b"%PDF")
        assert (study_dir / f"figures/{name}.png").read_bytes().startswith(b"\x89PNG")


def test_statistics_tables_in_three_formats(study_dir):
    tables = study_dir / "results/tables"
    for stem in ("comparison", "optima", "exclusions", "slopes", "split", "invariance", "stability", "flips"):
        assert (tables / f"{stem}.csv").exists() and "\\toprule" in (tables / f"{stem}.tex").read_text()
        assert (tables / f"{stem}.md").read_text().count("|") > 10
    # one model: no size comparison (the table has its columns and no rows)
    assert pd.read_csv(tables / "sizes.csv").empty
    optima = pd.read_csv(tables / "optima.csv")
    # two ratios: every peak is at an edge of the grid, a bound, and the table says so
    assert set(optima["unit"]) == TASKS and set(optima["scoring"]) == {"excluded", "chance"}
    assert optima["edge"].isin(["low", "high"]).all()
    comparison = pd.read_csv(tables / "comparison.csv")
    # no analysis.primary in this study: the comparison is exploratory, and said to be
    assert set(comparison["set"]) == {"exploratory"}
    slopes = pd.read_csv(tables / "slopes.csv")
    assert set(slopes["task"]) == TASKS and slopes["n_cells"].eq(2).all()
    inv = pd.read_csv(tables / "invariance.csv")
    # one batch size: k = -b/a cannot be estimated, and the table says so
    assert (inv["verdict"] == "not estimable").all() and inv["reason"].str.len().gt(0).all()
    summary = (tables / "analysis.md").read_text()
    # one batch size: the note says that neither steps nor examples vary with it
    assert "one batch size (4)" in summary and "split" in summary
    assert "No primary comparison was pre-registered" in summary
    assert "cannot support a claim about reasoning and pattern tasks in general" in summary
    # one seed: the spread across seeds is not measured, and analysis.md says so
    stability = pd.read_csv(tables / "stability.csv")
    assert len(stability) == 2 * len(TASKS) and stability["n_seeds"].eq(1).all() and stability["df"].eq(0).all()
    assert stability["score_sd"].isna().all() and stability["final_loss_mean"].gt(0).all()
    assert "tiny-llama / sft, stability across seeds: one seed: the spread across seeds cannot be measured" in summary
    # two ratios: each half holds one, so each task compares its two cells item by item
    flips = pd.read_csv(tables / "flips.csv")
    assert sorted(flips["task"]) == sorted(TASKS) and flips["p_mcnemar"].between(0, 1).all()
    assert (flips["low_run"] == "tiny-llama/sft/r1e-04_bs4_s0").all()
    assert (flips["high_run"] == "tiny-llama/sft/r1e-03_bs4_s0").all()
    assert flips["n_items"].eq(12).all()
    assert (flips["both_right"] + flips["both_wrong"] + flips["right_low_only"] + flips["right_high_only"]).eq(12).all()
    kinds = dict(zip(flips["task"], flips["kind"]))
    assert kinds == {"arith": "generative", "format": "generative", "compare": "choice", "sequence": "choice"}
    examples = [json.loads(line) for line in (tables / "flipped_examples.jsonl").read_text().splitlines()]
    flipped = flips.set_index("task")[["right_low_only", "right_high_only"]].sum(axis=1)
    assert len(examples) == flipped.sum()  # 12 items: under the cap
    for e in examples:
        assert e["right_at"] in ("low", "high") and e["prompt"] and "low_response" in e and "high_response" in e
    assert "items that flip between each task's best low-ratio and best high-ratio cell" in summary


def test_every_rule_left_a_log_and_a_benchmark(study_dir):
    logs = list((study_dir / "results/logs").rglob("*.log"))
    bench = list((study_dir / "results/benchmarks").rglob("*.tsv"))
    # 4 task data + sft data + model + 2 x (train + 4 task evaluations) + aggregate + statistics + plots
    assert len(logs) == 19 and len(bench) == 19
    train_log = (study_dir / "results/logs/train/tiny-llama/sft/r1e-04_bs4_s0.log").read_text()
    assert "[train] step 24/24 (100%)" in train_log


def test_code_changes_leave_a_finished_study_untouched(study_dir):
    """A git pull or a refactor gives library modules, entry scripts, rule files and the
    Snakefile new mtimes (same params, inputs and outputs): nothing reruns, since the
    workflow profile (profiles/default) leaves out Snakemake's script-mtime trigger."""
    import os

    for path in [*REPO.glob("workflow_scripts/**/*.py"), *REPO.glob("rules/*.smk"), REPO / "Snakefile"]:
        os.utime(path)
    proc = snakemake(study_dir, study_dir / "study.yaml", "-n")
    out = proc.stdout + proc.stderr
    assert planned_jobs(out) == [] and "Nothing to be done" in out, out


def test_adding_a_ratio_runs_only_the_new_cells(study_dir):
    runs = study_dir / "results/runs/tiny-llama/sft"
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file()}
    cfg = write_config(small_study(ratios=(1e-4, 3e-4, 1e-3)), study_dir / "study.yaml")

    plan = planned_jobs(snakemake(study_dir, cfg, "-n").stdout)
    rules = sorted(rule for rule, _ in plan)
    assert rules == ["aggregate", "all", *["evaluate"] * 4, "plots", "statistics", "train"], rules
    new = {w["cell"] for rule, w in plan if rule in ("train", "evaluate")}
    assert new == {"r3e-04_bs4_s0"}
    assert sorted(w["task"] for rule, w in plan if rule == "evaluate") == ["arith", "compare", "format", "sequence"]

    snakemake(study_dir, cfg, "--cores", "2")
    after = {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file()}
    assert {p: after[p] for p in before} == before, "an existing cell's output was rewritten"
    scores = pd.read_csv(study_dir / "results/tables/scores.csv")
    assert sorted(scores[scores["primary"]]["ratio"].unique()) == [1e-4, 3e-4, 1e-3]
    # nothing left to do
    assert planned_jobs(snakemake(study_dir, cfg, "-n").stdout) == []


@pytest.mark.parametrize(
    "configfile,counts",
    [
        # 135M: 30 SFT + 12 DPO cells, 8 paper benchmarks, the SFT and DPO hub subsets
        (
            "config.yaml",
            {
                "prefetch_model": 1,
                "prefetch_benchmark": 8,
                "make_train_data": 2,
                "check_prompts": 8,  # one per (model, built-in task)
                "train": 42,
                "evaluate": 42 * 8,  # one per (cell, task)
                "aggregate": 1,
                "statistics": 1,
                "plots": 1,
            },
        ),
        # 1.7B: 8 SFT cells + DPO-1130 and DPO-1207 grids of 3
        (
            "studies/smoltulu-1.7b.yaml",
            {
                "prefetch_model": 1,
                "prefetch_benchmark": 8,
                "make_train_data": 3,
                "check_prompts": 8,
                "train": 14,
                "evaluate": 14 * 8,
                "aggregate": 1,
                "statistics": 1,
                "plots": 1,
            },
        ),
    ],
)
def test_real_study_dag_builds_offline(tmp_path, configfile, counts):
    """The whole DAG (prefetch, SFT cells, DPO cells, evaluations, tables, figures) builds on
    a machine without internet; nothing is fetched at DAG-build time."""
    out = snakemake(tmp_path, REPO / configfile, "-n").stdout
    jobs = planned_jobs(out)
    got = {rule: sum(r == rule for r, _ in jobs) for rule in counts}
    assert got == counts
    # the primary and exploratory comparisons, the optima, the sizes table and their figures
    for path in ("tables/comparison.csv", "tables/optima.csv", "tables/sizes.csv", "figures/optima.pdf"):
        assert path in out, path
    stages = {w["stage"] for r, w in jobs if r == "train"}
    assert "sft" in stages and any(s.startswith("dpo") for s in stages)


def test_without_configfile_config_yaml_is_the_study_and_config_overrides_apply():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--config", "threads=3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = planned_jobs(proc.stdout)
    assert sum(rule == "train" for rule, _ in jobs) == 42  # config.yaml: 30 SFT + 12 DPO cells
    # an override reaches the validated config: a bad one is caught and named
    bad = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--config", "threads=0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0 and "config error at threads" in bad.stdout + bad.stderr


@pytest.mark.parametrize("study", ["smollm2-135m-offline", "smollm2-135m-base-offline"])
def test_offline_real_weights_study_dag_builds(study):
    out = snakemake(REPO, REPO / f"studies/{study}.yaml", "-n").stdout
    jobs = planned_jobs(out)
    assert [r for r, _ in jobs].count("materialize_gguf_model") == 1
    assert [r for r, _ in jobs].count("train") == 6 and "build_tiny_model" not in out


@pytest.mark.parametrize("configfile", ["config.yaml", "studies/demo.yaml", "studies/smollm2-135m-offline.yaml"])
def test_lint_is_clean(configfile):
    proc = snakemake(REPO, REPO / configfile, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def _freeze_cli(*args):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "workflow_scripts.freeze", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_freeze_verify_and_a_changed_raw_score_is_named(study_dir):
    cfg = str(study_dir / "study.yaml")
    made = _freeze_cli("freeze", "paper-v1", "--configfile", cfg, "--root", str(study_dir))
    assert made.returncode == 0, made.stderr
    frozen = study_dir / "results/frozen/paper-v1"
    import json

    manifest = json.loads((frozen / "MANIFEST.json").read_text())
    assert "tables/scores.csv" in manifest["files"] and "figures/split.pdf" in manifest["files"]
    for name in ("comparison.csv", "optima.csv", "sizes.csv", "exclusions.csv", "analysis.md", "models.csv"):
        assert f"tables/{name}" in manifest["files"], name
    assert set(manifest["lm_eval_task_hashes"]) == TASKS and manifest["versions"]["lm_eval"]
    assert len(manifest["grid"]) == len({c["run_id"] for c in manifest["grid"]})

    ok = _freeze_cli("verify", "paper-v1", "--root", str(study_dir))
    assert ok.returncode == 0, ok.stderr
    again = _freeze_cli("freeze", "paper-v1", "--configfile", cfg, "--root", str(study_dir))
    assert again.returncode == 2 and "never overwritten" in again.stderr

    run_id = manifest["grid"][0]["run_id"]
    raw = study_dir / "results/runs" / run_id / "eval/tasks/compare/results.json"
    original = raw.read_text()
    data = json.loads(original)
    data["results"]["compare"]["acc,none"] = 0.123456
    raw.write_text(json.dumps(data))
    try:
        bad = _freeze_cli("verify", "paper-v1", "--root", str(study_dir))
    finally:
        raw.write_text(original)
    assert bad.returncode == 1
    assert f"{run_id} / compare / acc,none" in bad.stderr and "0.123456" in bad.stderr
    assert _freeze_cli("verify", "paper-v1", "--root", str(study_dir)).returncode == 0

    # the statistics regenerate from the raw per-item scores: one flipped answer is named
    samples = raw.parent / "samples/compare.jsonl"
    kept_samples = samples.read_bytes()
    lines = kept_samples.decode().splitlines()
    first = json.loads(lines[0])
    first["acc"] = 1.0 - first["acc"]
    samples.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    try:
        flipped = _freeze_cli("verify", "paper-v1", "--root", str(study_dir))
    finally:
        samples.write_bytes(kept_samples)
    assert flipped.returncode == 1 and "slopes.csv: regenerated statistics differ" in flipped.stderr, flipped.stderr
    assert _freeze_cli("verify", "paper-v1", "--root", str(study_dir)).returncode == 0

    # a hand-edited frozen statistics table is named, whether or not its hash was updated
    table = frozen / "tables/comparison.csv"
    kept = table.read_bytes()
    assert b"exploratory,excluded," in kept
    table.write_bytes(kept.replace(b"exploratory,excluded,", b"exploratory,excluded,9", 1))
    try:
        named = _freeze_cli("verify", "paper-v1", "--root", str(study_dir))
        manifest["files"]["tables/comparison.csv"] = hashlib.sha256(table.read_bytes()).hexdigest()
        (frozen / "MANIFEST.json").write_text(json.dumps(manifest))
        forged = _freeze_cli("verify", "paper-v1", "--root", str(study_dir))
    finally:
        table.write_bytes(kept)
        manifest["files"]["tables/comparison.csv"] = hashlib.sha256(kept).hexdigest()
        (frozen / "MANIFEST.json").write_text(json.dumps(manifest))
    assert named.returncode == 1 and "comparison.csv: sha256 differs" in named.stderr
    assert forged.returncode == 1 and "comparison.csv: regenerated statistics differ" in forged.stderr
    assert _freeze_cli("verify", "paper-v1", "--root", str(study_dir)).returncode == 0
    unknown = _freeze_cli("verify", "no-such-tag", "--root", str(study_dir))
    assert unknown.returncode == 2 and "no-such-tag/MANIFEST.json does not exist" in unknown.stderr


def test_report_builds_with_figures_and_tables(study_dir):
    out = study_dir / "report.html"
    snakemake(study_dir, study_dir / "study.yaml", "--report", str(out))
    html = out.read_text(errors="replace")
    assert out.stat().st_size > 100_000
    for name in ("split.png", "forest.png", "stability.png", "scores.csv", "flips.csv", "study_config.yaml"):
        assert name in html, name


def test_packs_group_cells_of_one_ratio_and_adding_a_ratio_adds_packs(tmp_path):
    """cells_per_gpu: K cells of one ratio share a training job; a new ratio is a new pack."""
    cfg = small_study(ratios=(1e-4,), batch_sizes=(4, 8), seeds=(0, 1))
    cfg["stages"]["sft"]["cells_per_gpu"] = 2
    path = write_config(cfg, tmp_path / "s.yaml")
    jobs = planned_jobs(snakemake(tmp_path, path, "-n").stdout)
    packs = sorted((r, w["head"]) for r, w in jobs if r.startswith("train_pack"))
    # 4 cells of one ratio: (bs4 s0, bs4 s1) and (bs8 s0, bs8 s1)
    assert packs == [("train_pack_sft_0", "r1e-04"), ("train_pack_sft_1", "r1e-04")]
    assert not [r for r, _ in jobs if r == "train"]
    assert sum(r == "evaluate" for r, _ in jobs) == 4 * 4  # every cell is still evaluated on its own, per task
    cfg["stages"]["sft"]["grid"]["ratios"].append(1e-3)
    jobs = planned_jobs(snakemake(tmp_path, write_config(cfg, path), "-n").stdout)
    assert sorted(w["head"] for r, w in jobs if r.startswith("train_pack")) == ["r1e-03", "r1e-03", "r1e-04", "r1e-04"]


def test_profile_dry_run_shows_what_each_training_job_asks_for(tmp_path):
    """`snakemake --profile slurm -n` from the repository root (where ./slurm is found), with the
    user's cluster names in a file outside the repository ($LRBS_CLUSTER), and without."""
    import os
    import subprocess
    import sys

    def train_resources(env):
        cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm", "-n", "-d", str(tmp_path)]
        proc = subprocess.run(
            [*cmd, "--configfile", str(REPO / "config.yaml")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        blocks = proc.stdout.split("\n\n")
        train = [b for b in blocks if re.search(r"^\s*rule train:", b, re.M)]
        assert len(train) == 42
        return [re.search(r"resources: (.*)", b).group(1) for b in train]

    (tmp_path / "cluster.yaml").write_text("partition: gpu\nqos: long\n")
    env = dict(os.environ, LRBS_CLUSTER=str(tmp_path / "cluster.yaml"))
    for res in train_resources(env):  # config.yaml: smollm2-135m's train resources, one GPU per cell
        for want in ("gpu=1", "mem_mb=32000", "runtime=360", "cpus_per_gpu=8", "slurm_partition=gpu", "qos=long"):
            assert want in res, (want, res)
    (tmp_path / "none.yaml").write_text("")  # no names (whatever slurm/cluster.yaml a developer keeps):
    env["LRBS_CLUSTER"] = str(tmp_path / "none.yaml")  # the cluster's default partition; the profile names none
    assert not any("slurm_partition" in res for res in train_resources(env))
