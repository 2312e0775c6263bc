"""Reading and writing the pipeline's files; writes are atomic, so that a killed job never
leaves a complete-looking output."""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

# Fault injection for the tests that kill a job mid-write: when a file whose name matches
# this glob is about to be renamed into place, the process kills itself with SIGKILL.
FAULT_ENV = "LRBS_FAULT_KILL_BEFORE_RENAME"


def _fault_point(path: Path) -> None:
    pattern = os.environ.get(FAULT_ENV)
    if pattern and fnmatch.fnmatch(path.name, pattern):
        os.kill(os.getpid(), signal.SIGKILL)


def _umask() -> int:
    """This process's umask, without changing it (Linux reports it in /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and set it back at once
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path beside ``path``; rename it into place only on success.

    A process killed before the rename leaves only a hidden ``.name.*`` file, which the
    next write of the same file removes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    # mkstemp makes the file 0600; give it the mode any other file of the user's gets (umask),
    # or a collaborator of the user's group could not read the results
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    try:
        yield Path(tmp)
        _fault_point(path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj, **kw) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, **kw) + "\n")


def write_jsonl(rows, path: str | os.PathLike, *, sort_keys: bool = True, ensure_ascii: bool = True) -> None:
    """One JSON object per line, written atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, sort_keys=sort_keys, ensure_ascii=ensure_ascii) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
