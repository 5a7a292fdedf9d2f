"""The one name rule for labs and nodes (orchestrate.names)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from orchestrate.names import BadName, check_name, is_under, name_argument, path_under

GOOD = ["a", "r1", "R1", "lab_2", "my-lab", "9", "x" * 63, "A-b_C"]
BAD = ["", ".", "..", "../x", "a/b", "/abs", "x" * 64, "-x", "_x", "a b", "a.b", "a\x00b",
       "a\nb", "é", "r1\u200b", "~", "$(id)"]


@pytest.mark.parametrize("name", GOOD)
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", BAD)
def test_bad_names(name: str) -> None:
    with pytest.raises(BadName, match="letters, digits"):
        check_name(name, "lab name")
    with pytest.raises(argparse.ArgumentTypeError):
        name_argument(name)


def test_non_strings_are_refused() -> None:
    for value in (None, 1, ["a"], b"a"):
        with pytest.raises(BadName, match="must be a string"):
            check_name(value)


def test_path_under_refuses_symlinks_out(tmp_path: Path) -> None:
    root = tmp_path / "labs"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    assert path_under(root, "lab1", "nodes") == (root / "lab1" / "nodes").resolve()
    with pytest.raises(BadName, match="outside"):
        path_under(root, "link")
    assert is_under(root / "lab1" / "x", root)
    assert not is_under(root / "link" / "x", root)
    assert not is_under(root / ".." / "elsewhere", root)
