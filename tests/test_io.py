"""Files written whole (workflow_scripts/io.py): a hidden temporary file renamed into place,
with the mode any other file of the user's would get."""

import os

import pytest

from workflow_scripts.io import atomic_write_text


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_files_written_whole_take_the_users_umask(tmp_path, umask, mode):
    """atomic_path writes through mkstemp (0600): the file gets the mode the umask gives."""
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "t.csv", "x\n")
    finally:
        os.umask(old)
    assert (tmp_path / "t.csv").stat().st_mode & 0o777 == mode
