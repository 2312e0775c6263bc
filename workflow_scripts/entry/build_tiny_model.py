import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged

from workflow_scripts.tiny_model import build_from_sft_file

with logged(snakemake):
    info = build_from_sft_file(snakemake.input.sft, snakemake.output[0], snakemake.params.build)
    print(info)
