import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: no shadowing
from _bootstrap import logged

from workflow_scripts.gguf_source import materialize

with logged(snakemake):
    g = snakemake.params.gguf
    materialize(g["package"], snakemake.output[0], g.get("file"), g.get("tokenizer", "as_shipped"))
