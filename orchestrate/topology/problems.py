"""Problems found in a topology file, each placed at `file:line:col` (the one Problem type of
appliance.yamlsource, shared with the router config and the checks), and the reporter that
collects them while a validator walks the document."""

from __future__ import annotations

from typing import Any

from appliance.yamlsource import Document, KeyPath, Problem

__all__ = ["Problem", "Reporter", "TopologyError", "is_int"]


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

    def error(self, path: KeyPath, message: str, hint: str = "", *, key: bool = False
              ) -> None:
        self.problems.append(self.doc.problem(path, message, hint, key=key))

    def unknown_keys(self, data: dict[Any, Any], allowed: tuple[str, ...], path: KeyPath,
                     what: str) -> None:
        for key in data:
            if key not in allowed:
                self.error((*path, key), f"unknown {what} key {key!r}",
                           f"expected one of: {', '.join(allowed)}", key=True)

    def integer(self, value: Any, path: KeyPath, low: int, high: int, what: str
                ) -> int | None:
        if not is_int(value) or not low <= value <= high:
            self.error(path, f"{what} must be an integer {low}..{high}, got {value!r}")
            return None
        return int(value)
