"""The harness that runs the workflow as an ordinary user (tests/ordinary_user.py): it really
drops root, the repository's study plans as that user, and Snakemake's protected() refuses a
rerun for the user where root would overwrite silently (why the harness exists, issue #14)."""

import os
import subprocess
import sys

from conftest import small_study, write_config
from ordinary_user import IS_ROOT, ensure_user, run_as_user, snakemake_as_user, user_dir, user_python

# A workflow of one rule whose output is protected(): changed params rerun it
PROTECTED = """\
rule make:
    output:
        protected("out.txt"),
    params:
        value=config["value"],
    shell:
        "echo {params.value} > {output}"
"""


def test_the_harness_drops_root(tmp_path):
    uid, _, _ = ensure_user()
    folder = user_dir(tmp_path)
    # as root: a file of root's in the user's folder; else any root-owned file (only tested)
    target = folder / "roots.txt" if IS_ROOT else "/etc/passwd"
    if IS_ROOT:
        target.write_text("root\n")
    proc = run_as_user(["sh", "-c", 'id -u; test -w "$1" && echo writable || echo read-only', "sh", target], cwd=folder)
    assert proc.stdout.split() == [str(uid), "read-only"] and uid != 0, proc
    if IS_ROOT:
        append = run_as_user(["sh", "-c", 'echo user >> "$1"', "sh", target], cwd=folder)
        assert append.returncode != 0 and "Permission denied" in append.stderr, append
        assert target.read_text() == "root\n"


def test_the_small_study_plans_as_the_user(tmp_path):
    folder = user_dir(tmp_path)
    config = write_config(small_study(), folder / "config.yaml")
    proc = snakemake_as_user(folder, config, "-n")
    assert proc.returncode == 0
    assert "rule train" in proc.stdout and "rule evaluate" in proc.stdout, proc.stdout[-3000:]


def _make(folder, v):
    return ["-m", "snakemake", "-s", folder / "Snakefile", "-d", folder, "--cores", "1", "--config", f"value={v}"]


def test_protected_output_refuses_a_rerun_for_the_user(tmp_path):
    folder = user_dir(tmp_path)
    (folder / "Snakefile").write_text(PROTECTED)
    first = run_as_user([user_python(), *_make(folder, 1)], cwd=folder)
    assert first.returncode == 0, first.stderr[-4000:]
    out = folder / "out.txt"
    assert out.read_text() == "1\n" and not out.stat().st_mode & 0o222  # protected: read-only
    rerun = run_as_user([user_python(), *_make(folder, 2)], cwd=folder)
    log = rerun.stdout + rerun.stderr
    assert rerun.returncode != 0, log[-4000:]
    assert "ProtectedOutputException" in log or "Write-protected output files" in log, log[-4000:]
    assert out.read_text() == "1\n"
    if IS_ROOT:  # the same rerun as root: no refusal, the protected file is replaced
        mine = tmp_path / "as_root"
        mine.mkdir()
        (mine / "Snakefile").write_text(PROTECTED)
        env = dict(os.environ, PYTHONHASHSEED="0")
        for v in (1, 2):
            run = subprocess.run([sys.executable, *map(str, _make(mine, v))], capture_output=True, text=True, env=env)
            assert run.returncode == 0, run.stderr[-4000:]
        assert (mine / "out.txt").read_text() == "2\n"
