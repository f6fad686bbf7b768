"""State folders hold patient data: whatever existed before, they end 0700 with files 0600."""

import stat

import pytest

from ips_screen.private_dir import ensure_private_dir, private_open, write_private_bytes


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_existing_world_readable_dir_and_files_become_private(tmp_path):
    state = tmp_path / "state"
    (state / "runs" / "r1").mkdir(parents=True)
    state.chmod(0o755)
    (state / "runs").chmod(0o755)
    out = state / "runs" / "r1" / "worklist.csv"
    out.write_text("Patient/1\n")
    out.chmod(0o644)

    ensure_private_dir(state)

    assert _mode(state) == 0o700
    assert _mode(state / "runs") == 0o700
    assert _mode(state / "runs" / "r1") == 0o700
    assert _mode(out) == 0o600


def test_new_dir_is_private(tmp_path):
    state = ensure_private_dir(tmp_path / "a" / "b")
    assert _mode(state) == 0o700


@pytest.mark.parametrize("mode", ["w", "wb", "a", "x"])
def test_private_open_creates_0600_whatever_the_umask(tmp_path, mode):
    import os

    old = os.umask(0)
    try:
        path = tmp_path / f"f-{mode}"
        with private_open(path, mode) as fh:
            fh.write(b"x" if "b" in mode else "x")
    finally:
        os.umask(old)
    assert _mode(path) == 0o600


def test_write_private_bytes_tightens_an_existing_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_private_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert _mode(path) == 0o600
