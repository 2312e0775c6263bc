"""The mixed-model second opinion on the primary comparison of optima (:mod:`workflow_scripts.optima`).

A linear mixed model (statsmodels MixedLM) of the cell scores,
standardised within each unit, on a quadratic in log10(LR/BS) per category, with a fixed
intercept per unit and a random intercept per trained run (a seed at one grid point: it
carries the training noise every unit of that run shares). Items are not a random effect of
their own: every cell is scored on the same items, so an item's difficulty shifts every cell
of its unit alike and is absorbed by the unit's intercept (the crossed design's documented
equivalent); the item x cell noise is in the residual. Each category's optimum is the
parabola's vertex, and the difference's interval comes from the delta method.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from .stats import CATEGORIES


def mixed_model(units: list) -> dict:
    """The mixed-model second opinion on the category difference (see the module docstring).

    Returns ``mixed_diff, mixed_lo, mixed_hi`` (log10 ratio; 95% delta-method interval) and
    ``mixed_note`` (why it is missing, or where the vertex fell)."""
    out = {"mixed_diff": math.nan, "mixed_lo": math.nan, "mixed_hi": math.nan, "mixed_note": ""}
    frames = []
    for u in units:
        sd = u.y.std()
        if not sd > 0:
            continue
        frames.append(
            pd.DataFrame(
                {"z": (u.y - u.y.mean()) / sd, "x": u.x, "unit": u.unit, "reasoning": u.category == "reasoning"}
            ).assign(run=[str(r) for r in u.run_ids])
        )
    if not frames:
        out["mixed_note"] = "no unit's score varies"
        return out
    df = pd.concat(frames, ignore_index=True)
    if df["reasoning"].nunique() < 2 or df["x"].nunique() < 3:
        out["mixed_note"] = "needs both categories and three ratios"
        return out
    x0 = df["x"].mean()
    xc = df["x"].to_numpy() - x0
    r = df["reasoning"].to_numpy(float)
    dummies = pd.get_dummies(df["unit"]).to_numpy(float)
    X = np.column_stack([dummies, r * xc, r * xc**2, (1 - r) * xc, (1 - r) * xc**2])
    from statsmodels.regression.mixed_linear_model import MixedLM

    k = dummies.shape[1]
    fit, errors = None, []
    for method in ("bfgs", "powell", "nm"):  # lbfgs fails outright when the run variance is near 0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = MixedLM(df["z"].to_numpy(), X, groups=df["run"].to_numpy()).fit(reml=True, method=method)
            if fit.converged:
                break
        except (np.linalg.LinAlgError, ValueError) as e:
            errors.append(f"{method}: {e}")
    if fit is None:
        out["mixed_note"] = f"did not fit ({'; '.join(errors)})"
        return out
    beta = np.asarray(fit.fe_params)[k : k + 4]
    cov = np.asarray(fit.cov_params())[k : k + 4, k : k + 4]
    b1r, b2r, b1p, b2p = beta
    flat = [c for c, b2 in (("reasoning", b2r), ("pattern", b2p)) if not b2 < 0]
    if flat:
        out["mixed_note"] = f"no peak: the fitted parabola of {' and '.join(flat)} opens upward or is flat"
        return out
    diff = -b1r / (2 * b2r) + b1p / (2 * b2p)
    grad = np.array([-1 / (2 * b2r), b1r / (2 * b2r**2), 1 / (2 * b2p), -b1p / (2 * b2p**2)])
    se = float(np.sqrt(max(grad @ cov @ grad, 0.0)))
    out.update(mixed_diff=float(diff), mixed_lo=float(diff - 1.96 * se), mixed_hi=float(diff + 1.96 * se))
    vertices = (x0 - b1r / (2 * b2r), x0 - b1p / (2 * b2p))
    outside = [c for c, v in zip(CATEGORIES, vertices) if not df["x"].min() <= v <= df["x"].max()]
    re_var = float(np.asarray(fit.cov_re).reshape(-1)[0])
    out["mixed_note"] = (
        f"{'converged' if fit.converged else 'did not converge'}; run intercept variance {re_var:.3g}"
        + (f"; the {' and '.join(outside)} vertex lies outside the grid (extrapolated)" if outside else "")
    )
    return out
