"""The one rule for lab and node names, and the one way to turn a name into a path.

A lab name becomes a directory (`$VRLAB_HOME/labs/<lab>/`), a network namespace
(`vrlab-<lab>`), a libvirt domain and part of every socket path; a node name becomes a
directory under it and the guest's hostname. So both follow one hostname-like rule:

    1 to 63 characters: ASCII letters, digits, '-' and '_', starting with a letter or a digit

(63 is the longest DNS label, RFC 1035 §2.3.4). No '/', no '.', no space: a name can never
climb out of its directory or mean anything to a shell. Every entry point checks it (the CLI's
`--name` and `LAB` arguments, a topology's `name:` and node names, `Lab.up`/`Lab.open`, the
pytest plugin), and `path_under` re-checks every path built from a name after resolving it.
"""

from __future__ import annotations

import re
from pathlib import Path

NAME_MAX = 63
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
NAME_RULE = (f"1 to {NAME_MAX} letters, digits, '-' or '_', starting with a letter or a digit")


class BadName(ValueError):
    """A name breaks the rule, or a path built from one leaves its directory."""


def name_problem(name: object, what: str = "name") -> str | None:
    """Why `name` is not a valid lab/node name (None when it is)."""
    if not isinstance(name, str):
        return f"{what} must be a string, got {type(name).__name__}"
    if NAME_RE.fullmatch(name):
        return None
    shown = name if len(name) <= 80 else name[:80] + "..."
    if len(name) > NAME_MAX:
        return f"{what} {shown!r} is {len(name)} characters long ({NAME_RULE})"
    return f"{what} {shown!r} is not a valid name ({NAME_RULE})"


def check_name(name: object, what: str = "name") -> str:
    """`name` itself when it follows the rule; BadName otherwise."""
    problem = name_problem(name, what)
    if problem is not None:
        raise BadName(problem)
    assert isinstance(name, str)
    return name


def path_under(root: Path, *names: str) -> Path:
    """`root/names...` after checking each name and that the resolved path stays under `root`.

    Resolving catches what the rule alone cannot: a symlink planted inside `root` that points
    elsewhere.
    """
    for name in names:
        check_name(name)
    base = root.resolve()
    path = base.joinpath(*names).resolve()
    if not path.is_relative_to(base) or path == base:
        raise BadName(f"{base.joinpath(*names)} resolves to {path}, outside {base}")
    return path


def is_under(path: str | Path, *roots: Path) -> bool:
    """Whether `path`, resolved, is one of `roots` or inside one of them."""
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(root.resolve()) for root in roots)


def name_argument(text: str) -> str:
    """argparse `type=` for `--name`/`--lab`: a bad name is a usage error (exit 2)."""
    import argparse

    try:
        return check_name(text, "lab name")
    except BadName as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
