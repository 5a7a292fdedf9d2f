"""Problems found in a topology file, each placed at `file:line:col`, and the reporter that
collects them while a validator walks the document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrate import yamlpos
from orchestrate.yamlpos import Document, Mark


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a topology file, with its place."""

    file: str
    line: int
    col: int
    where: str
    """The path inside the document, e.g. `links[2].mtu`."""
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.col}: {self.where}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class TopologyError(ValueError):
    """The file is not a valid topology; `.problems` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems



def is_int(value: Any) -> bool:
    """An int that is not a bool (YAML `true` loads as one)."""
    return isinstance(value, int) and not isinstance(value, bool)


class Reporter:
    """Collects problems against a parsed document; every validator step reports through it."""

    def __init__(self, doc: Document, source: str) -> None:
        self.doc = doc
        self.source = source
        self.problems: list[Problem] = []

    def error(self, path: yamlpos.Path, message: str, hint: str = "", *, key: bool = False
              ) -> None:
        mark: Mark = self.doc.key_mark(path) if key else self.doc.mark(path)
        self.problems.append(
            Problem(self.source, mark.line, mark.col, yamlpos.format_path(path), message, hint))

    def unknown_keys(self, data: dict[Any, Any], allowed: tuple[str, ...], path: yamlpos.Path,
                     what: str) -> None:
        for key in data:
            if key not in allowed:
                self.error((*path, key), f"unknown {what} key {key!r}",
                           f"expected one of: {', '.join(allowed)}", key=True)

    def integer(self, value: Any, path: yamlpos.Path, low: int, high: int, what: str
                ) -> int | None:
        if not is_int(value) or not low <= value <= high:
            self.error(path, f"{what} must be an integer {low}..{high}, got {value!r}")
            return None
        return int(value)
