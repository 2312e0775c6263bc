"""Named cells beside the published SmolTulu scores."""

import pandas as pd
import pytest

from conftest import small_study
from workflow_scripts.config import ConfigError, load_study
from workflow_scripts.plots import reference_figure
from workflow_scripts.reference import PUBLISHED_CSV, reference_table


def scores(run_id="m/sft/lr9e-05_bs8_s0", status="ok"):
    rows = [(t, v) for t, v in [("arc_easy", 0.60), ("arc_challenge", 0.40), ("gsm8k", 0.47), ("piqa", 0.71),
                                ("arith", 0.9)]]
    return pd.DataFrame([{"run_id": run_id, "task": t, "value": v, "primary": True, "status": status}
                         for t, v in rows])


def test_reference_rows_put_ours_beside_the_published_score_where_tasks_match():
    ref = reference_table(scores(), pd.read_csv(PUBLISHED_CSV), {"SmolTulu SFT-1130": "m/sft/lr9e-05_bs8_s0"})
    got = ref.set_index("benchmark")
    assert sorted(got.index) == ["arc_avg", "gsm8k_5shot", "piqa"]  # arith has no published column
    assert got.loc["arc_avg", "our_score"] == pytest.approx(50.0)  # mean of ARC easy and challenge
    assert got.loc["arc_avg", "tasks"] == "arc_challenge+arc_easy"
    assert got.loc["gsm8k_5shot", "published_score"] == 49.0  # SmolTulu SFT-1130, paper Table 3
    assert got.loc["gsm8k_5shot", "difference"] == pytest.approx(47.0 - 49.0)
    fig = reference_figure(scores(), pd.read_csv(PUBLISHED_CSV), "s", named=ref)
    assert "named cells" in fig._suptitle.get_text()


def test_reference_names_are_checked_before_any_job():
    cfg = small_study(ratios=(1e-3,))
    cfg["reference"] = {"SmolTulu SFT-9999": "tiny-llama/sft/r1e-03_bs4_s0"}
    with pytest.raises(ConfigError, match="reference.SmolTulu SFT-9999"):
        load_study(cfg)
    cfg["reference"] = {"SmolTulu SFT-1130": "tiny-llama/sft/r5e-03_bs4_s0"}
    with pytest.raises(ConfigError, match="not a cell of this study"):
        load_study(cfg)
