"""Run the workflow as an ordinary (non-root) user (issue #14 item 1).

The tests run as root, and root never meets what a user meets: Snakemake's ``protected()``
outputs are read-only files, but ``os.access(W_OK)`` is always true for root, so a rerun that
refuses for a user silently overwrites them as root; the same for every permission error.

    ensure_user(name="lrbs-user") -> (uid, gid, home)   the user (useradd once, home under /tmp)
    user_python() -> Path                               a Python the user runs, with our packages
    run_as_user(cmd, *, cwd, env=None, timeout=600)     a command as the user, in a clean env
    snakemake_as_user(workdir, configfile, *args, check=True, timeout=1200, env=None)
                                                        conftest.snakemake(), as the user
    user_path(*more) -> str                             the user's PATH, then ``more`` folders
    popen_as_user(cmd, *, cwd, env=None)                run_as_user, started and not waited for
    user_dir(tmp_path, name="user") -> Path             a folder the user writes, linked in tmp_path

Root's Python is a pyenv build under /root (mode 700): no other user can run it. The user's
Python is Debian's /usr/bin/python3 (the same minor version, so root's compiled wheels fit) in
a venv whose .pth adds a hard-linked copy of root's site-packages (``cp -al``: seconds, no disk;
a reinstall takes minutes and the network). The copy is remade when root's site-packages
changes. Where no such Python can be made the helpers skip, or fail with
LRBS_REQUIRE_ORDINARY_USER=1 (CI). Run as a non-root user, they use sys.executable and that user.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import pwd
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IS_ROOT = os.geteuid() == 0
ENV_DIR = Path("/tmp/lrbs-user-env")  # fixed, so every test run reuses it; one filesystem with /root
SYSTEM_PYTHON = Path("/usr/bin/python3")
MODULES = ("torch", "transformers", "trl", "lm_eval", "snakemake", "workflow_scripts")
LAYOUT = 1  # part of the stamp: bump it when the env's layout below changes, to rebuild it
USER_DIRS = Path("/tmp/lrbs-user-dirs")  # user_dir() folders (not under /tmp/pytest-of-root, see there)
SBIN = "/usr/sbin:/usr/bin:/sbin:/bin"


def _unavailable(reason: str):
    if os.environ.get("LRBS_REQUIRE_ORDINARY_USER") == "1":
        pytest.fail(f"LRBS_REQUIRE_ORDINARY_USER=1 but no ordinary user to run as: {reason}")
    pytest.skip(f"no ordinary user to run as: {reason}")


def ensure_user(name: str = "lrbs-user") -> tuple[int, int, Path]:
    """The user's uid, gid and home; ``useradd`` makes the user on first use."""
    if not IS_ROOT:
        return os.getuid(), os.getgid(), Path.home()
    home = Path(f"/tmp/{name}-home")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        add = ["useradd", "--user-group", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/bash", name]
        proc = subprocess.run(add, capture_output=True, text=True, env=dict(os.environ, PATH=SBIN))
        try:  # a concurrent test run may have made the user first (useradd then fails)
            pw = pwd.getpwnam(name)
        except KeyError:
            _unavailable(f"useradd failed ({proc.returncode}): {proc.stderr.strip()}")
    home = Path(pw.pw_dir)
    home.mkdir(mode=0o700, exist_ok=True)
    os.chown(home, pw.pw_uid, pw.pw_gid)  # /tmp may keep a home its user lost (a new container)
    return pw.pw_uid, pw.pw_gid, home


def _site_dirs() -> list[str]:
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def _stamp(system_version: str) -> str:
    """Changes when a package is installed, removed or upgraded (its dist-info folder is new)."""
    h = hashlib.sha256(f"{LAYOUT}\n{sys.executable}\n{sys.version}\n{system_version}\n".encode())
    for folder in _site_dirs():
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name != "__pycache__":  # root's imports rewrite it: not a change of packages
                h.update(f"{folder}/{entry.name} {entry.stat(follow_symlinks=False).st_mtime_ns}\n".encode())
    return h.hexdigest()


@contextlib.contextmanager
def _locked():
    """One builder at a time (two pytest runs may start together)."""
    ENV_DIR.mkdir(mode=0o755, exist_ok=True)
    with open(ENV_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@functools.cache
def user_python() -> Path:
    """The user's Python: a venv of /usr/bin/python3 over a hard-linked copy of root's packages."""
    if not IS_ROOT:
        return Path(sys.executable)
    if not SYSTEM_PYTHON.exists():
        _unavailable(f"{SYSTEM_PYTHON} is missing, and root's {sys.executable} is private to root")
    version = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version)"], capture_output=True, text=True)
    want = "{}.{}.".format(*sys.version_info[:2])
    if not version.stdout.startswith(want):
        _unavailable(f"{SYSTEM_PYTHON} is {version.stdout.strip()!r}, not {want}x like {sys.executable}")
    ensure_user()  # before the lock: nothing below may wait for it twice
    venv = ENV_DIR / "venv"
    python, stamp_file = venv / "bin" / "python", ENV_DIR / "stamp"
    with _locked():
        stamp = _stamp(version.stdout)
        if python.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
            return python
        stamp_file.unlink(missing_ok=True)  # written last: a half-built env is never taken as done
        made = subprocess.run(
            [SYSTEM_PYTHON, "-m", "venv", "--clear", "--without-pip", venv], capture_output=True, text=True
        )
        if made.returncode:
            _unavailable(f"{SYSTEM_PYTHON} -m venv failed (Debian: apt-get install python3-venv): {made.stderr}")
        lines = []
        for i, folder in enumerate(_site_dirs()):
            copy = ENV_DIR / f"site-packages-{i}"
            subprocess.run(["rm", "-rf", copy], check=True)
            # hard links: same files (root-owned, world-readable), new folders outside /root
            if subprocess.run(["cp", "-al", folder, copy]).returncode:
                _unavailable(f"cp -al {folder} {copy} failed (another filesystem?)")
            # root's editable install of this repo may point at another checkout: drop it, the
            # user's PYTHONPATH (the repo) is where workflow_scripts comes from
            for finder in copy.glob("__editable__*"):
                finder.unlink()
            # addsitedir, not a bare path: the copy's own .pth files (setuptools' distutils) run too
            lines.append(f"import site; site.addsitedir({str(copy)!r})\n")
        site = venv / "lib" / "python{}.{}".format(*sys.version_info[:2]) / "site-packages"
        (site / "lrbs-root-packages.pth").write_text("".join(lines))
        check = _run_as([python, "-c", f"import {', '.join(MODULES)}"], python, cwd=ENV_DIR)
        if check.returncode:
            _unavailable(f"as the user, {python} cannot import {MODULES}:\n{check.stderr[-3000:]}")
        stamp_file.write_text(stamp)
    return python


def _path(python: Path, *more: str) -> str:
    return os.pathsep.join(dict.fromkeys([str(python.parent), "/usr/local/bin", "/usr/bin", "/bin", *map(str, more)]))


def user_path(*more: str) -> str:
    """The PATH run_as_user gives the user (its Python's folder first), then the folders ``more``
    (e.g. where SLURM's tools are) that are not on it yet: for an ``env`` that sets PATH."""
    return _path(user_python(), *more)


def _as_user(cmd, python: Path, env=None) -> tuple[list[str], dict]:
    """The command line and environment that run ``cmd`` as the user."""
    uid, gid, home = ensure_user()
    name = pwd.getpwuid(uid).pw_name
    clean = {
        "HOME": str(home),
        "USER": name,
        "LOGNAME": name,
        "PATH": _path(python),
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONPATH": str(REPO),
        # git refuses a repository another user owns (provenance.git_commit runs it); on a
        # cluster the user owns the clone, here root does
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "safe.directory",
        "GIT_CONFIG_VALUE_0": str(REPO),
        **(env or {}),
    }
    become = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--"] if IS_ROOT else []
    return [*become, *map(str, cmd)], clean


def _run_as(cmd, python: Path, *, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    cmd, clean = _as_user(cmd, python, env)
    return subprocess.run(cmd, cwd=cwd, env=clean, capture_output=True, text=True, timeout=timeout)


def popen_as_user(cmd, *, cwd, env=None) -> subprocess.Popen:
    """``cmd`` as the user, started and not waited for (stdout and stderr piped, text)."""
    cmd, clean = _as_user(cmd, user_python(), env)
    return subprocess.Popen(cmd, cwd=cwd, env=clean, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_as_user(cmd, *, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    """``cmd`` as the user: HOME, PATH (the user's Python first), PYTHONPATH=REPO, plus ``env``.
    ``cwd`` should be a folder the user may enter (``user_dir``)."""
    return _run_as(cmd, user_python(), cwd=cwd, env=env, timeout=timeout)


def snakemake_as_user(workdir, configfile, *args, check=True, timeout=1200, env=None):
    """conftest.snakemake(), as the user: the repository's workflow, outputs in ``workdir``."""
    snakefile = REPO / "Snakefile"
    cmd = [user_python(), "-m", "snakemake", "-s", snakefile, "-d", workdir, "--configfile", configfile, *args]
    proc = run_as_user(cmd, cwd=workdir, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake as the user failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


def user_dir(tmp_path, name: str = "user") -> Path:
    """A folder the user owns, for one test: ``tmp_path/name``, a link to a folder under
    USER_DIRS (the path returned) that is removed once pytest has removed ``tmp_path``."""
    uid, gid, _ = ensure_user()
    link = Path(tmp_path) / name
    if not IS_ROOT or link.is_symlink():
        link.mkdir(exist_ok=True)
        return link.resolve()
    # Not in tmp_path itself: pytest makes /tmp/pytest-of-root and the folders below it mode
    # 700, and although o+x on them would let the user through, every pytest session that
    # starts (a concurrent run in this tree) sets pytest-of-root back to 700 under a running job.
    USER_DIRS.mkdir(mode=0o755, exist_ok=True)
    for owner in USER_DIRS.glob("*.for"):  # folders of tests whose tmp_path pytest has removed
        if not Path(owner.read_text()).exists():
            subprocess.run(["rm", "-rf", str(owner)[: -len(".for")]], check=True)
            owner.unlink(missing_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{Path(tmp_path).name}-", dir=USER_DIRS))
    Path(f"{folder}.for").write_text(str(tmp_path))
    os.chown(folder, uid, gid)
    folder.chmod(0o755)
    link.symlink_to(folder)
    return folder
