"""From per-cell outputs to the study's tables (CSV, plus LaTeX for the pivot).

Inputs are the files the train and evaluate rules wrote; nothing is recomputed here.

* ``scores.csv``  tidy: one row per run x task x metric (``primary`` marks the task's
  metric from the config); ``truncated``, last: how many of the task's requests lm-eval cut
  from the left to fit ``evaluation.max_length`` (empty for an evaluation that did not
  count them; the column appears once some evaluation of the study did, so tables of
  earlier evaluations stay byte for byte what they were)
* ``pivot.csv`` / ``.tex`` / ``.md``  primary score by task (rows) and LR/BS ratio (columns),
  mean over seeds and batch sizes of the cells that trained to the end, with the number of
  cells averaged and the number excluded (diverged)
* ``cells.csv`` / ``.tex`` / ``.md``  per-cell primary scores, one column per task
* ``loss.csv``  training loss by optimizer step and examples seen, per run
* ``runs.csv``  one row per run: hyperparameters, steps, examples seen, loss (times stay in
  run.json and the benchmark files, so that the same study gives byte-identical tables)
* ``models.csv``  one row per model of the study, in config order: its parameter count and
  where it comes from (``run.json``, recorded at training; ``config``, ``models[].parameters``;
  empty when unknown)

A cell's columns (model, stage, learning rate, batch size, ratio, seed) are the values its
``run.json`` recorded (``spec``), not re-derived from the run id. CSV tables carry every float
at full precision (Python's repr: ``float(text) == value``), so a grid value reads back as
the very float that named the cell and statistics group grid values exactly; LaTeX and
Markdown (markup.py) round for reading.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import yaml

from .evaluations import results_files
from .grid import parse_run_id
from .io import atomic_path, atomic_write_text
from .lmeval_tasks import split_metric, stderr_key
from .markup import cells_latex, cells_markdown, pivot_latex, pivot_markdown, reference_latex, reference_markdown
from .model_sizes import models_table
from .numbers import fmt_num
from .reference import reference_table

CELL_COLUMNS = ["model", "stage", "run_id", "learning_rate", "batch_size", "ratio", "seed"]
# table column -> the key of run.json's ``spec`` that recorded it (spec.training_spec)
SPEC_KEYS = {
    "model": "model",
    "stage": "stage",
    "learning_rate": "learning_rate",
    "batch_size": "effective_batch_size",
    "ratio": "ratio",
    "seed": "seed",
}
# how every float of a CSV table is written: None is pandas' repr, which reads back exactly;
# freeze.verify still regenerates at the old "%.6g" to check sets frozen before full precision
CSV_FLOAT_FORMAT = None


def _read_json(path) -> dict:
    with open(path) as f:
        return json.load(f)


def _cell_columns(run_id: str, run: dict | None = None) -> dict:
    """A cell's identifying columns, as its run.json recorded them (``spec``).

    A run.json written before its spec recorded a field (or a record without a spec) falls
    back, field by field, on the value the run id encodes, which is the value the cell was
    trained with (grid.parse_run_id makes the same canonical floats as the spec)."""
    spec = (run or {}).get("spec") or {}
    if spec.get("run_id", run_id) != run_id:
        raise ValueError(f"{run_id}: its run.json records the cell {spec['run_id']!r}")
    out = {"run_id": run_id, **{col: spec.get(key) for col, key in SPEC_KEYS.items()}}
    if any(v is None for v in out.values()):  # an old run.json: the run id fills the gaps
        cell = parse_run_id(run_id)
        out = {col: getattr(cell, col) if v is None else v for col, v in out.items()}
    return {col: out[col] for col in CELL_COLUMNS}


def truncated_counts(results: dict) -> dict | None:
    """task -> requests lm-eval cut (``pipeline.truncated`` of results.json); None when the
    evaluation did not count them (before the count existed, a skipped cell, a failed count)."""
    counts = (results.get("pipeline") or {}).get("truncated")
    if not isinstance(counts, dict) or "error" in counts:
        return None
    return {task: c.get("truncated") for task, c in counts.items()}


def score_rows(run_id: str, run: dict, results: dict, tasks: dict) -> list[dict]:
    """Tidy rows for one evaluated cell."""
    base = _cell_columns(run_id, run)
    status = run.get("status", "ok")
    base.update(
        {
            "parent": run.get("spec", {}).get("parent_run_id") or "",
            "optimizer_steps": run.get("optimizer_steps"),
            "examples_seen": run.get("examples_seen"),
            "status": status,
        }
    )
    rows = []
    if status != "ok" or results.get("status") == "skipped":
        # not scored: one row per task that says so, never a made-up number
        for task, spec in sorted(tasks.items()):
            rows.append(
                {
                    **base,
                    "task": task,
                    "category": spec["category"],
                    "metric": spec["metric"],
                    "metric_name": split_metric(spec["metric"])[0],
                    "primary": True,
                    "value": math.nan,
                    "stderr": math.nan,
                    "n_samples": 0,
                }
            )
        return rows
    for task, spec in sorted(tasks.items()):
        if task not in results["results"]:
            raise KeyError(f"{run_id}: lm-eval results have no task {task!r}")
        res = results["results"][task]
        metrics = sorted(k for k in res if "," in k and "_stderr," not in k)
        if spec["metric"] not in metrics:
            raise KeyError(f"{run_id}: task {task!r} reported {metrics}, not the configured metric {spec['metric']!r}")
        for m in metrics:
            value = float(res[m])
            se = res.get(stderr_key(m))
            se = float(se) if isinstance(se, (int, float)) else math.nan
            rows.append(
                {
                    **base,
                    "task": task,
                    "category": spec["category"],
                    "metric": m,
                    "metric_name": split_metric(m)[0],
                    "primary": m == spec["metric"],
                    "value": value,
                    "stderr": se,
                    "n_samples": res.get("sample_len"),
                }
            )
    cut = truncated_counts(results)
    if cut is not None:
        for r in rows:
            r["truncated"] = cut.get(r["task"])
    return rows


def scores_table(cells: list[dict], tasks: dict) -> pd.DataFrame:
    rows = []
    for c in cells:
        run = _read_json(c["run_json"])
        by_file = {}  # one evaluation may score several tasks (a cell evaluated before per-task jobs)
        for task, path in results_files(c, tasks).items():
            by_file.setdefault(path, {})[task] = tasks[task]
        for path, scored in by_file.items():
            rows.extend(score_rows(c["run_id"], run, _read_json(path), scored))
    df = pd.DataFrame(rows)
    if "truncated" in df:  # appended last; empty (not 0) where an evaluation did not count
        df["truncated"] = df.pop("truncated").astype("Int64")
    return df.sort_values(
        ["model", "stage", "ratio", "batch_size", "seed", "task", "metric"], kind="stable"
    ).reset_index(drop=True)


def pivot_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Primary score by (model, stage, category, task) x ratio: mean over seeds and batch sizes."""
    keys = ["model", "stage", "category", "task", "metric"]
    prim = scores[scores["primary"]]
    ok = prim[prim["status"] == "ok"]
    piv = ok.pivot_table(index=keys, columns="ratio", values="value", aggfunc="mean", dropna=False)
    piv = piv.reindex(
        index=pd.MultiIndex.from_frame(prim[keys].drop_duplicates().sort_values(keys)),
        columns=sorted(prim["ratio"].unique()),
    )
    piv.columns = [f"r={fmt_num(c)}" for c in piv.columns]
    piv["cells"] = ok.groupby(keys)["run_id"].nunique()
    piv["excluded"] = prim[prim["status"] != "ok"].groupby(keys)["run_id"].nunique()
    piv = piv.reset_index()
    piv[["cells", "excluded"]] = piv[["cells", "excluded"]].fillna(0).astype(int)
    return piv


def cells_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Per-cell scores, wide: one row per run, one column per task (its primary metric)."""
    prim = scores[scores["primary"]]
    keys = ["model", "stage", "run_id", "learning_rate", "batch_size", "ratio", "seed", "parent", "status"]
    wide = prim.set_index(keys + ["task"])["value"].unstack("task")  # NaN stays NaN: not scored
    wide.columns.name = None
    return wide.reset_index().sort_values(["model", "stage", "ratio", "batch_size", "seed"], kind="stable")


def loss_table(cells: list[dict]) -> pd.DataFrame:
    rows = []
    for c in cells:
        history = _read_json(c["history_json"])
        cols = _cell_columns(c["run_id"], _read_json(c["run_json"]))
        for h in history:
            if "loss" in h:
                rows.append(
                    {
                        **cols,
                        "step": h["step"],
                        "examples_seen": h["step"] * cols["batch_size"],
                        "loss": float(h["loss"]),
                    }
                )
    return pd.DataFrame(rows)


def runs_table(cells: list[dict]) -> pd.DataFrame:
    rows = []
    for c in cells:
        run = _read_json(c["run_json"])
        spec = run["spec"]
        rows.append(
            {
                **_cell_columns(c["run_id"], run),
                "per_device_train_batch_size": spec["per_device_train_batch_size"],
                "gradient_accumulation_steps": spec["gradient_accumulation_steps"],
                "gpus": spec["gpus"],
                "optimizer_steps": run["optimizer_steps"],
                "examples_seen": run["examples_seen"],
                "first_loss": run["first_loss"],
                "final_loss": run["final_loss"],
                "status": run.get("status", "ok"),
                "git_commit": run["git"]["commit"],
            }
        )
    return pd.DataFrame(rows)


def _write_csv(df: pd.DataFrame, path, float_format: str | None = CSV_FLOAT_FORMAT) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format=float_format)


def write_reference(
    scores: pd.DataFrame,
    published_csv,
    pairs: dict,
    study: str,
    outputs: dict,
    float_format: str | None = CSV_FLOAT_FORMAT,
) -> pd.DataFrame:
    """Named cells beside the published scores (empty, with the columns, when none are named)."""
    ref = reference_table(scores, pd.read_csv(published_csv), pairs or {})
    _write_csv(ref, outputs["reference_csv"], float_format)
    atomic_write_text(outputs["reference_tex"], reference_latex(ref, study))
    atomic_write_text(outputs["reference_md"], reference_markdown(ref, study))
    return ref


def write_tables(
    cells: list[dict],
    tasks: dict,
    study: str,
    outputs: dict,
    config: dict | None = None,
    published_csv=None,
    reference: dict | None = None,
    float_format: str | None = CSV_FLOAT_FORMAT,
) -> dict:
    """Build every table; ``outputs`` maps scores/pivot_csv/pivot_tex/loss/runs(/config,
    /reference_*) to paths. ``float_format``: how CSV floats are written (None: exactly;
    freeze.verify passes the old "%.6g" for sets frozen at that precision)."""
    scores = scores_table(cells, tasks)
    piv = pivot_table(scores)
    _write_csv(scores, outputs["scores"], float_format)
    _write_csv(piv, outputs["pivot_csv"], float_format)
    atomic_write_text(outputs["pivot_tex"], pivot_latex(piv, study))
    atomic_write_text(outputs["pivot_md"], pivot_markdown(piv, study))
    wide = cells_table(scores)
    _write_csv(wide, outputs["cells_csv"], float_format)
    atomic_write_text(outputs["cells_tex"], cells_latex(wide, study))
    atomic_write_text(outputs["cells_md"], cells_markdown(wide, study))
    _write_csv(loss_table(cells), outputs["loss"], float_format)
    _write_csv(runs_table(cells), outputs["runs"], float_format)
    if published_csv is not None and "reference_csv" in outputs:
        write_reference(scores, published_csv, reference, study, outputs, float_format)
    if config is not None and "models" in outputs:
        _write_csv(models_table(cells, config["models"]), outputs["models"], float_format)
    if config is not None and "config" in outputs:
        atomic_write_text(
            outputs["config"],
            "# the study config as validated and completed with defaults\n" + yaml.safe_dump(config, sort_keys=False),
        )
    n_bad = scores.loc[scores["status"] != "ok", "run_id"].nunique()
    print(
        f"[aggregate] {len(cells)} runs ({n_bad} not scored: diverged), "
        f"{int((scores['primary'] & scores['value'].notna()).sum())} primary scores",
        flush=True,
    )
    print(piv.to_string(index=False), flush=True)
    return {"scores": scores, "pivot": piv}
