"""Freeze a study's tables and figures for a paper, and later prove they still regenerate.

    python -m workflow_scripts.freeze freeze TAG [--configfile studies/demo.yaml]
    python -m workflow_scripts.freeze verify TAG

``freeze`` copies ``results/tables`` (the aggregate tables and the statistics of rule
statistics, analysis.md included) and ``figures`` to ``results/frozen/TAG/`` with a
``MANIFEST.json``: sha256 of every file, the resolved config, the grid (every run id and its
hyperparameters), package versions, git commit, a hash of each lm-eval task definition as
lm-eval recorded it, and the model and dataset revisions and hashes. An existing tag is
never overwritten. ``verify`` rebuilds the tables from the raw per-cell outputs listed in the
manifest (and, from them, the statistics: the bootstrap is seeded, so they regenerate byte
for byte) and fails, naming each differing file and cell, if anything differs. A set frozen
before a table existed is verified on the tables it holds.

Tables are compared byte for byte at the precision the frozen file carries. CSV tables are
written at full precision (every float reads back exactly); sets frozen before that carry
floats at six significant digits (``%.6g``). A frozen CSV none of whose floats has more
digits than that is also accepted when it equals the tables regenerated at ``%.6g``, so such
a set still verifies, and any change a six-digit table can show is still caught (a change
beyond the sixth significant digit is not: that file never recorded it).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import math
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

from . import layout
from .aggregate import write_tables
from .evaluations import paths, rebase, results_files
from .inputs import aggregate_cells
from .io import atomic_write_json
from .layout import cell_files
from .provenance import git_commit, package_versions, sha256_file

# the tables a freeze holds and verify regenerates (file names as rules aggregate and
# statistics write them); a set frozen earlier is verified on the tables it holds
FROZEN_TABLES = (
    "scores",
    "pivot_csv",
    "pivot_tex",
    "pivot_md",
    "cells_csv",
    "cells_tex",
    "cells_md",
    "loss",
    "runs",
    "models",
)
TABLE_NAMES = {key: Path(layout.TABLES[key]).name for key in FROZEN_TABLES}
STATISTICS_NAMES = {key: Path(path).name for key, path in layout.ANALYSIS.items()}
CELL_KEY = ["run_id", "task", "metric"]
LEGACY_FLOAT_FORMAT = "%.6g"  # how CSV tables wrote floats before full precision
MODEL_METADATA_KEYS = {"pretrained", "dtype", "revision", "device", "max_length", "batch_size"}


class FreezeError(RuntimeError):
    pass


def _task_hashes(cells: list[dict], tasks) -> dict:
    """sha256 of each task's definition as lm-eval recorded it (same for every cell)."""
    out = {}
    for path in dict.fromkeys(p for c in cells for p in results_files(c, tasks).values()):
        results = json.loads(Path(path).read_text())
        for task, cfg in results.get("configs", {}).items():
            # lm-eval copies the model arguments into metadata; the task is everything else
            cfg = {
                **cfg,
                "metadata": {k: v for k, v in cfg.get("metadata", {}).items() if k not in MODEL_METADATA_KEYS},
            }
            text = json.dumps(cfg, sort_keys=True, default=str)
            text = re.sub(r" at 0x[0-9a-f]+>", ">", text)  # function reprs carry memory addresses
            h = hashlib.sha256(text.encode()).hexdigest()
            if out.setdefault(task, h) != h:
                raise FreezeError(f"task {task!r} was evaluated with different definitions across cells")
    return out


def freeze(tag: str, study, root: str | Path = ".") -> Path:
    """Copy the current tables and figures of ``study`` (a config.Study) under results/frozen/TAG."""
    root = Path(root)
    dest = root / layout.FROZEN / tag
    if dest.exists():
        raise FreezeError(
            f"results/frozen/{tag} exists already; frozen results are never overwritten. Choose a new tag."
        )
    entries = aggregate_cells(study, root)  # relative to root: recorded in the manifest
    cells = [rebase(c, root) for c in entries]
    missing = [p for c in cells for p in paths(c) if not Path(p).exists()]
    if missing:
        raise FreezeError(
            f"the study is not complete ({len(missing)} files missing, e.g. {missing[0]}); run snakemake first"
        )
    names = [*TABLE_NAMES.values(), *STATISTICS_NAMES.values()]
    sources = {f"tables/{n}": root / layout.TABLES_DIR / n for n in names}
    missing = [rel for rel, src in sources.items() if not src.exists()]
    if missing:
        raise FreezeError(f"results/{missing[0]} does not exist; run snakemake to build every table first")
    sources.update({f"figures/{p.name}": p for p in sorted((root / "figures").glob("*.p*[fg]"))})
    runs = [json.loads(Path(c["run_json"]).read_text()) for c in cells]
    tmp = dest.with_name(f".{tag}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, src in sources.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, tmp / rel)
    manifest = {
        "tag": tag,
        "study": study.config["study"],
        "files": {rel: sha256_file(tmp / rel) for rel in sorted(sources)},
        "config": study.config,
        "tasks": study.tasks,
        "grid": [c.as_dict() for c in study.cells],
        "versions": package_versions(),
        "git": git_commit(),
        "lm_eval_task_hashes": _task_hashes(cells, study.tasks),
        # which raw files scored each cell and task: verify reads the same ones
        "inputs": entries,
        "models": {
            name: {"id": m.get("id"), "revision": m.get("revision"), "build": m.get("build")}
            for name, m in study.models.items()
        },
        "training_data_sha256": sorted({r["train_file_sha256"] for r in runs}),
        "run_git_commits": sorted({str(r["git"]["commit"]) for r in runs}),
    }
    atomic_write_json(tmp / "MANIFEST.json", manifest, default=str)
    tmp.rename(dest)
    return dest


def _diff_scores(frozen: pd.DataFrame, fresh: pd.DataFrame) -> list[str]:
    merged = frozen.merge(fresh, on=CELL_KEY, how="outer", suffixes=("_frozen", "_now"), indicator=True)
    out = []
    for _, r in merged.iterrows():
        where = f"{r['run_id']} / {r['task']} / {r['metric']}"
        if r["_merge"] != "both":
            out.append(f"scores.csv: {where} only in the {'frozen' if r['_merge'] == 'left_only' else 'new'} table")
        elif not (pd.isna(r["value_frozen"]) and pd.isna(r["value_now"])) and r["value_frozen"] != r["value_now"]:
            out.append(f"scores.csv: {where}: frozen {r['value_frozen']} != now {r['value_now']}")
    return out


def at_legacy_precision(path: str | Path) -> bool:
    """True when no float of the CSV file carries more digits than LEGACY_FLOAT_FORMAT wrote
    (integers and words carry no float precision; a table with no float at all is True)."""
    with open(path, newline="") as f:
        for row in csv.reader(f):
            for field in row:
                try:
                    value = float(field)
                except ValueError:
                    continue
                if math.isfinite(value) and float(LEGACY_FLOAT_FORMAT % value) != value:
                    return False
    return True


def _regenerate(cells: list[dict], manifest: dict, folder: Path, float_format: str | None) -> dict:
    """The aggregate tables of the manifest's cells, written under ``folder``; key -> path."""
    folder.mkdir()
    outputs = {k: str(folder / n) for k, n in TABLE_NAMES.items()}
    write_tables(
        cells, manifest["tasks"], manifest["study"], outputs, config=manifest["config"], float_format=float_format
    )
    return outputs


def _regenerate_statistics(cells: list[dict], manifest: dict, tables: dict, folder: Path) -> dict:
    """The statistics tables (and analysis.md) from the regenerated scores; key -> path."""
    from .analysis import write_analysis

    folder.mkdir()
    outputs = {k: str(folder / n) for k, n in STATISTICS_NAMES.items()}
    with contextlib.redirect_stdout(io.StringIO()):  # write_analysis prints analysis.md
        write_analysis(
            tables["scores"],
            cells,
            manifest["tasks"],
            outputs,
            study=manifest["study"],
            analysis=manifest["config"].get("analysis", {}),
            models_csv=tables["models"],
            runs_csv=tables["runs"],
        )
    return outputs


def verify(tag: str, root: str | Path = ".") -> list[str]:
    """Regenerate the tables from raw outputs; return the differences (empty: verified)."""
    root = Path(root)
    dest = root / layout.FROZEN / tag
    if not (dest / "MANIFEST.json").exists():
        raise FreezeError(
            f"results/frozen/{tag}/MANIFEST.json does not exist; frozen tags: "
            f"{sorted(p.name for p in dest.parent.glob('*') if p.is_dir())}"
        )
    manifest = json.loads((dest / "MANIFEST.json").read_text())
    problems = [
        f"{rel}: sha256 differs from MANIFEST.json (the frozen copy was edited)"
        for rel, h in manifest["files"].items()
        if sha256_file(dest / rel) != h
    ]
    # a set frozen before per-task evaluation records no inputs: its cells' all-tasks files
    entries = manifest.get("inputs") or [cell_files(c["run_id"]) for c in manifest["grid"]]
    cells = [rebase(c, root) for c in entries]
    tables = dest / "tables"
    held = {rel.removeprefix("tables/") for rel in manifest["files"]}
    legacy = {n for n in TABLE_NAMES.values() if n in held and n.endswith(".csv") and at_legacy_precision(tables / n)}
    with tempfile.TemporaryDirectory() as tmp:
        fresh = _regenerate(cells, manifest, Path(tmp) / "full", None)
        old = _regenerate(cells, manifest, Path(tmp) / "legacy", LEGACY_FLOAT_FORMAT) if legacy else {}
        # the scores cell by cell, both sides at the precision of the frozen file
        now = old["scores"] if "scores.csv" in legacy else fresh["scores"]
        problems += _diff_scores(pd.read_csv(tables / "scores.csv"), pd.read_csv(now))
        for key, name in TABLE_NAMES.items():
            if name not in held:
                continue
            frozen = (tables / name).read_bytes()
            if Path(fresh[key]).read_bytes() != frozen and not (
                name in legacy and Path(old[key]).read_bytes() == frozen
            ):
                problems.append(f"{name}: regenerated table differs from results/frozen/{tag}/tables/{name}")
        if held & set(STATISTICS_NAMES.values()):  # from the scores and runs at the frozen tables' precision
            runs = old["runs"] if "runs.csv" in legacy else fresh["runs"]
            stats = _regenerate_statistics(
                cells, manifest, {**fresh, "scores": now, "runs": runs}, Path(tmp) / "statistics"
            )
            for key, name in STATISTICS_NAMES.items():
                if name in held and Path(stats[key]).read_bytes() != (tables / name).read_bytes():
                    problems.append(
                        f"{name}: regenerated statistics differ from results/frozen/{tag}/tables/{name}"
                        + _first_difference(tables / name, Path(stats[key]))
                    )
    return problems


def _first_difference(frozen: Path, now: Path) -> str:
    """Where two text tables first differ (line number and both lines), for the message."""
    a, b = frozen.read_text().splitlines(), now.read_text().splitlines()
    for i, (x, y) in enumerate(zip(a, b), start=1):
        if x != y:
            return f" (line {i}: frozen {x[:160]!r}, now {y[:160]!r})"
    return f" (frozen {len(a)} lines, now {len(b)})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workflow_scripts.freeze", description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["freeze", "verify"])
    ap.add_argument("tag")
    ap.add_argument("--configfile", default="config.yaml", help="the study config (freeze only)")
    ap.add_argument("--root", default=".", help="the study's working directory")
    args = ap.parse_args(argv)
    try:
        if args.action == "freeze":
            import yaml

            from .config import load_study

            study = load_study(yaml.safe_load(Path(args.configfile).read_text()), base_dir=args.root)
            dest = freeze(args.tag, study, args.root)
            print(f"frozen: {dest} ({len(json.loads((dest / 'MANIFEST.json').read_text())['files'])} files)")
            return 0
        problems = verify(args.tag, args.root)
    except FreezeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if problems:
        print(f"results/frozen/{args.tag} does NOT verify:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(
        f"results/frozen/{args.tag} verified: every table regenerates identically from the raw outputs "
        "(at the precision each frozen table carries)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
