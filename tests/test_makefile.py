"""The README's two commands on a stock system Python: `make` uses a project venv when the
interpreter is "externally managed" (PEP 668: Debian 12+, Ubuntu 24.04), and the Python it
is given otherwise."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def planned(python: str) -> str:
    """What `make install` would run with this interpreter (`make -n`: nothing is run)."""
    proc = subprocess.run(["make", "-n", "install", f"PYTHON={python}"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def externally_managed(python: str) -> bool:
    code = (
        "import os, sysconfig; print(os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))"
    )
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip() == "True"


def test_the_python_given_is_used_when_pip_may_install_into_it():
    assert not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
    out = planned(sys.executable)
    assert f"{sys.executable} -m pip install" in out and "venv" not in out


def test_an_externally_managed_system_python_gets_a_project_venv():
    system = "/usr/bin/python3"
    if not (os.path.exists(system) and externally_managed(system)):
        pytest.skip("no externally managed system Python here")
    out = planned(system)
    assert f"{system} -m venv .venv" in out and "externally managed (PEP 668)" in out
    assert ".venv/bin/python -m pip install --quiet -e" in out and f"{system} -m pip" not in out
