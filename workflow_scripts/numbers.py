"""One canonical way to read and write the numbers that name grid cells.

YAML 1.1 (PyYAML) reads ``1e-4`` as the *string* "1e-4" (it only knows ``1.0e-4``);
users write it anyway, so :func:`coerce_scientific` turns such strings back into floats.
Every float that ends up in a path goes through :func:`canonical` and :func:`fmt_num`.
"""

from __future__ import annotations

import math
import re

# A number in scientific notation the way people type it: 1e-4, 3.1E-06, -2e3, .5e-2
SCI_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

# Keys whose string values must never be reinterpreted (hub revisions can look like numbers).
_VERBATIM_KEYS = {"revision", "id", "path", "name", "study", "tokenizer"}


def canonical(x: float) -> float:
    """Round to 12 significant digits so that ratio x batch size products are stable.

    ``1.125e-5 * 8`` is ``9.000000000000001e-05`` in binary floating point; the cell it
    names must be the same cell as ``9e-5`` typed by a user.
    """
    x = float(x)
    if x == 0 or not math.isfinite(x):
        return x
    return float(f"{x:.12g}")


def fmt_num(x: float) -> str:
    """Shortest scientific notation that reads back to the same canonical float.

    >>> fmt_num(1.125e-5), fmt_num(1e-4), fmt_num(3.1e-6)
    ('1.125e-05', '1e-04', '3.1e-06')
    """
    x = canonical(x)
    for digits in range(0, 13):
        s = f"{x:.{digits}e}"
        if float(s) == x:
            return s
    return f"{x:.12e}"  # pragma: no cover - canonical() guarantees the loop returns


def parse_num(s: str) -> float:
    """Inverse of :func:`fmt_num` (accepts any float text)."""
    return canonical(float(s))


def coerce_scientific(obj, key: str | None = None):
    """Return a copy of a parsed YAML tree with scientific-notation strings as floats."""
    if isinstance(obj, dict):
        return {k: coerce_scientific(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [coerce_scientific(v, key) for v in obj]
    if isinstance(obj, str) and key not in _VERBATIM_KEYS and SCI_RE.match(obj.strip()):
        return float(obj)
    return obj
