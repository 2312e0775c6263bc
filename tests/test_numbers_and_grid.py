import math

import pytest

from workflow_scripts.grid import expand_grid, make_cell, parse_run_id, run_id
from workflow_scripts.numbers import canonical, coerce_scientific, fmt_num, parse_num


@pytest.mark.parametrize(
    "x,text",
    [
        (1.125e-5, "1.125e-05"),
        (1e-4, "1e-04"),
        (3.1e-6, "3.1e-06"),
        (0.0003, "3e-04"),
        (9.000000000000001e-05, "9e-05"),
        (12.5, "1.25e+01"),
    ],
)
def test_fmt_num_is_shortest_round_trip(x, text):
    assert fmt_num(x) == text
    assert parse_num(text) == canonical(x)


def test_coerce_scientific_reads_yaml_strings_as_numbers_but_not_revisions():
    cfg = {
        "grid": {"ratios": ["1e-4", 2.0e-5, "3E-06"]},
        "recipe": {"weight_decay": "1e-2", "name": "x"},
        "models": [{"revision": "1e10", "id": "org/1e5"}],
    }
    out = coerce_scientific(cfg)
    assert out["grid"]["ratios"] == [1e-4, 2e-5, 3e-6]
    assert all(isinstance(v, float) for v in out["grid"]["ratios"])
    assert out["recipe"]["weight_decay"] == 0.01
    assert out["models"][0] == {"revision": "1e10", "id": "org/1e5"}


def test_ratio_cell_id_round_trips_and_lr_is_ratio_times_bs():
    cell = make_cell("tiny", "sft", 8, 0, ratio=1.125e-5)
    assert cell.run_id == "tiny/sft/r1.125e-05_bs8_s0"
    assert cell.learning_rate == 9e-5  # not 9.000000000000001e-05
    back = parse_run_id(cell.run_id)
    assert back == cell
    assert (back.learning_rate, back.batch_size, back.ratio, back.seed) == (9e-5, 8, 1.125e-5, 0)


def test_lr_cell_id_round_trips():
    cell = make_cell("smollm2-135m", "sft", 32, 3, learning_rate=3e-4)
    assert run_id(cell) == "smollm2-135m/sft/lr3e-04_bs32_s3"
    back = parse_run_id(cell.run_id)
    assert back == cell and math.isclose(back.ratio, 3e-4 / 32)


def test_same_ratio_typed_two_ways_is_one_cell():
    typed = coerce_scientific({"ratios": ["1e-4"]})["ratios"][0]  # YAML gave the string "1e-4"
    assert make_cell("m", "sft", 8, 0, ratio=typed).run_id == make_cell("m", "sft", 8, 0, ratio=0.0001).run_id


@pytest.mark.parametrize("bad", ["tiny/sft/r1e-4_bs8", "tiny/sft/x1e-04_bs8_s0", "tiny/r1e-04_bs8_s0", ""])
def test_parse_run_id_rejects_malformed(bad):
    with pytest.raises(ValueError, match="not a run id"):
        parse_run_id(bad)


def test_expand_grid_is_full_product_in_stable_order():
    cells = expand_grid("m", "sft", {"ratios": [1e-5, 1e-4], "batch_sizes": [8, 32]}, [0, 1])
    assert len(cells) == 8
    assert len({c.run_id for c in cells}) == 8
    assert [c.run_id for c in cells][:2] == ["m/sft/r1e-05_bs8_s0", "m/sft/r1e-05_bs8_s1"]
