"""YAML loading that remembers where every key and value came from.

PyYAML's composer already knows the line and column of each node; its constructor forgets them.
`load` composes the node graph itself (SafeLoader, so no new dependency and no arbitrary
objects), builds plain Python data from it and keeps two side tables: the position of every
value and of every mapping key, addressed by the *path* to it (`("links", 2, "mtu")`).
Duplicate mapping keys, which PyYAML silently resolves to the last one, are reported instead.

Lines and columns are 1-based, as editors and compilers print them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

PathPart = str | int
Path = tuple[PathPart, ...]


@dataclass(frozen=True, slots=True)
class Mark:
    """A place in the YAML text (1-based line and column)."""

    line: int
    col: int


@dataclass(frozen=True, slots=True)
class YamlIssue:
    """Something the composer accepted but a topology must not contain (duplicate keys...)."""

    path: Path
    mark: Mark
    message: str
    hint: str = ""


class YamlSyntaxError(ValueError):
    """The text is not YAML; `mark` is where the parser gave up."""

    def __init__(self, message: str, mark: Mark) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


@dataclass
class Document:
    """Plain data (dict/list/scalars) plus the position of each value and key."""

    data: Any
    values: dict[Path, Mark] = field(default_factory=dict)
    keys: dict[Path, Mark] = field(default_factory=dict)
    issues: list[YamlIssue] = field(default_factory=list)

    def mark(self, path: Path) -> Mark:
        """Where the value at `path` starts; for a missing value, its closest ancestor."""
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, Mark(1, 1))

    def key_mark(self, path: Path) -> Mark:
        """Where the mapping key naming `path` starts (the value's place if it has no key)."""
        if path in self.keys:
            return self.keys[path]
        return self.mark(path)


MAP_TAG = "tag:yaml.org,2002:map"
SEQ_TAG = "tag:yaml.org,2002:seq"


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def format_path(path: Path) -> str:
    """`("links", 2, "mtu")` -> `links[2].mtu`; keys that are not identifiers are quoted."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.replace("_", "a").replace("-", "a").isalnum():
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text or "top level"


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, doc: Document) -> None:
        self.loader = loader
        self.doc = doc

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.doc.values[path] = _mark(node)
        if node.tag not in (MAP_TAG, SEQ_TAG) and not isinstance(node, yaml.ScalarNode):
            # the SafeLoader would refuse it too; never build arbitrary objects
            raise YamlSyntaxError(f"unsupported tag {node.tag!r}", _mark(node))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.doc.issues.append(YamlIssue(
                    path, _mark(key_node), "a mapping key must be a plain scalar",
                    "write the key as a string"))
                continue
            key = self.loader.construct_object(key_node, deep=True)
            if isinstance(key, bool | float) or key is None:
                # `yes:`/`on:`/`1.5:`/`~:` become bool/float/None in YAML 1.1: keep the text,
                # the validator will then name the key the user actually wrote.
                key = key_node.value
            sub = (*path, key)
            if key in result:
                first = self.doc.keys[sub]
                self.doc.issues.append(YamlIssue(
                    sub, _mark(key_node), f"duplicate key {key!r}",
                    f"first defined at line {first.line} column {first.col}"))
                continue
            self.doc.keys[sub] = _mark(key_node)
            result[key] = self.build(value_node, sub)
        return result


def load(text: str) -> Document:
    """Parse one YAML document; raise YamlSyntaxError with its position if it is not YAML."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = Mark(mark.line + 1, mark.column + 1) if mark else Mark(1, 1)
            message = str(e.problem or e.context or "invalid YAML")
            if e.context and e.problem and e.context_mark is not None:
                message += (f" ({e.context} at line {e.context_mark.line + 1} column "
                            f"{e.context_mark.column + 1})")
            raise YamlSyntaxError(message, where) from None
        except yaml.YAMLError as e:  # pragma: no cover - reader errors carry no mark class
            raise YamlSyntaxError(str(e), Mark(1, 1)) from None
        doc = Document(None)
        if node is None:
            doc.values[()] = Mark(1, 1)
            return doc
        try:
            doc.data = _Builder(loader, doc).build(node, ())
        except yaml.MarkedYAMLError as e:  # a bad scalar, e.g. an invalid !!timestamp
            mark = e.problem_mark or e.context_mark
            where = Mark(mark.line + 1, mark.column + 1) if mark else Mark(1, 1)
            raise YamlSyntaxError(str(e.problem or e), where) from None
        return doc
    finally:
        loader.dispose()
