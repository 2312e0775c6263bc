"""Grid cells and their canonical run ids.

A run id names one trained cell and is the folder of all its outputs under
``results/runs/``. It is made by :func:`run_id` and read back by :func:`parse_run_id`;
nothing else builds or splits these strings.

    tiny-llama/sft/r1.125e-05_bs8_s0      (grid given as ratios x batch sizes)
    tiny-llama/sft/lr3e-04_bs8_s0         (grid given as learning rates x batch sizes)
    tiny-llama/dpo/r1e-07_bs8_s0          (a DPO cell; its parent SFT cell is in the config)

A stage is named ``sft`` or ``dpo``, optionally with a suffix (``dpo_1130``) when a study
has several stages of one kind; :func:`stage_kind` reads the kind back.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import cached_property

from .numbers import canonical, fmt_num, parse_num

# The parts of a run id, as regular expressions: the rules' wildcard constraints use these
# (rules/common.smk), and so does parse_run_id; nowhere else spells them out.
MODEL_PATTERN = r"[A-Za-z0-9._-]+"
STAGE_PATTERN = r"(?:sft|dpo)(?:_[a-z0-9]+)?"  # schemas/config.schema.yaml mirrors it (tested)
HEAD_PATTERN = r"(?:r|lr)[0-9.]+e[+-]\d+"  # the cell's ratio or learning rate: r1e-04, lr3e-04
CELL_PATTERN = HEAD_PATTERN + r"_bs\d+_s\d+"  # a run id's last part: r1e-04_bs8_s0
STAGE_KINDS = ("sft", "dpo")

_CELL_RE = re.compile(
    rf"^(?P<model>{MODEL_PATTERN})/(?P<stage>{STAGE_PATTERN})/"
    r"(?P<kind>r|lr)(?P<value>[0-9.]+e[+-]\d+)_bs(?P<bs>\d+)_s(?P<seed>\d+)$"
)


def stage_kind(stage: str) -> str:
    """'sft' or 'dpo': what a stage trains (``dpo_1130`` is a DPO stage)."""
    kind = stage.split("_", 1)[0]
    if kind not in STAGE_KINDS or not re.fullmatch(STAGE_PATTERN, stage):
        raise ValueError(f"stage {stage!r}: a stage is named sft or dpo, optionally with a suffix such as dpo_1130")
    return kind


@dataclass(frozen=True)
class Cell:
    model: str
    stage: str
    learning_rate: float
    batch_size: int
    seed: int
    grid_kind: str  # "ratio" or "lr": which number the user set, and so which the id holds

    @property
    def ratio(self) -> float:
        return canonical(self.learning_rate / self.batch_size)

    @cached_property  # asked for once per rule per job when Snakemake builds the DAG
    def run_id(self) -> str:
        return run_id(self)

    @property
    def name(self) -> str:
        """The cell's part of the run id, without model and stage (``r1e-04_bs8_s0``)."""
        return self.run_id.rsplit("/", 1)[1]

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ratio"] = self.ratio
        d["run_id"] = self.run_id
        return d


def make_cell(
    model: str,
    stage: str,
    batch_size: int,
    seed: int,
    *,
    ratio: float | None = None,
    learning_rate: float | None = None,
) -> Cell:
    """A cell from either its ratio or its learning rate (exactly one of them)."""
    if (ratio is None) == (learning_rate is None):
        raise ValueError("give exactly one of ratio and learning_rate")
    if ratio is not None:
        return Cell(model, stage, canonical(canonical(ratio) * batch_size), int(batch_size), int(seed), "ratio")
    return Cell(model, stage, canonical(learning_rate), int(batch_size), int(seed), "lr")


def run_id(cell: Cell) -> str:
    if cell.grid_kind == "ratio":
        head = f"r{fmt_num(cell.ratio)}"
    else:
        head = f"lr{fmt_num(cell.learning_rate)}"
    return join_run_id(cell.model, cell.stage, cell_name(head, cell.batch_size, cell.seed))


def cell_name(head: str, batch_size: int, seed: int) -> str:
    """A run id's last part from its head (``r1e-04``), batch size and seed."""
    return f"{head}_bs{batch_size}_s{seed}"


def join_run_id(model: str, stage: str, name: str) -> str:
    """``MODEL/STAGE/NAME``: a run id from its three parts (rule wildcards)."""
    return f"{model}/{stage}/{name}"


def split_run_id(text: str) -> tuple[str, str, str]:
    """(model, stage, cell name) of a run id, checked."""
    parse_run_id(text)
    model, stage, name = text.split("/")
    return model, stage, name


def parse_run_id(text: str) -> Cell:
    m = _CELL_RE.match(text)
    if not m:
        raise ValueError(
            f"not a run id: {text!r} (expected MODEL/STAGE/r<ratio>_bs<N>_s<seed> or MODEL/STAGE/lr<lr>_bs<N>_s<seed>)"
        )
    kw = {"ratio": parse_num(m["value"])} if m["kind"] == "r" else {"learning_rate": parse_num(m["value"])}
    return make_cell(m["model"], m["stage"], int(m["bs"]), int(m["seed"]), **kw)


def expand_grid(model: str, stage: str, grid: dict, seeds: list[int]) -> list[Cell]:
    """All cells of one model x stage, in a stable order (value, batch size, seed)."""
    if "ratios" in grid:
        values, key = grid["ratios"], "ratio"
    else:
        values, key = grid["learning_rates"], "learning_rate"
    return [
        make_cell(model, stage, bs, seed, **{key: v}) for v in values for bs in grid["batch_sizes"] for seed in seeds
    ]
