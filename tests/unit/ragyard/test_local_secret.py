import os
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from ragyard.local_secret import local_secret


def test_the_secret_is_made_once_and_read_back(tmp_path):
    path = tmp_path / "review" / "session_secret"
    first = local_secret(path)
    assert len(first) >= 32
    assert local_secret(path) == first
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert local_secret(tmp_path / "other") != first


def test_processes_racing_for_the_first_secret_all_get_the_same(tmp_path):
    path = tmp_path / "secret"
    with ThreadPoolExecutor(8) as pool:
        got = set(pool.map(lambda _: local_secret(path), range(32)))
    assert len(got) == 1


def test_an_empty_secret_file_is_an_error_that_says_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "secret"
    path.write_text("")
    monkeypatch.setattr("ragyard.local_secret._WAIT_S", 0.1)
    with pytest.raises(RuntimeError, match="delete it"):
        local_secret(path)
