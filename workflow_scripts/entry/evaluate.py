import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged

from workflow_scripts.evaluate import evaluate_cell
from workflow_scripts.evaluations import speed_settings

with logged(snakemake, offline=True):
    p = snakemake.params
    task, data = p.evaluation["task"], p.evaluation["data"]  # one task: {name: definition}, {name: path}
    evaluate_cell(
        snakemake.input.model,
        task,
        data,
        snakemake.output.results,
        snakemake.output.samples,
        threads=snakemake.threads,
        run_json=snakemake.input.run,
        archive_dir=p.archive,
        benchmark_dirs=data,
        **p.evaluation["scoring"],
        # from the config, not params: a faster batch size or backend re-evaluates nothing
        **speed_settings(snakemake.config.get("evaluation") or {}),
    )
