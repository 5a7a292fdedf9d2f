"""The one YAML loader: safe by construction, and it remembers where every value came from.

Both the topology file (orchestrate) and the router configuration (appliance) are read here,
so both get the same guarantees and the same kind of error, a `Problem` placed at
`file:line:col`. Whatever the input, loading ends in bounded time and memory with either a
`Document` or a `YamlSourceError` listing every problem found; it never raises anything else.

The limits, and why:

- **Regular files only.** A FIFO would block `vrlab validate` forever, `/dev/zero` never ends,
  a directory is a mistake. The file is opened non-blocking and checked with `fstat` before a
  byte is read.
- **At most `MAX_BYTES` (16 MiB).** A hand-written topology is a few KiB; the largest real
  file, `vrlab expand` of a 1,000-router lab, is 5.4 MB and loads in ~4 s (libyaml's parser;
  PyYAML's pure-Python scanner takes about 1 s per MiB).
- **UTF-8 text of printable characters** (YAML 1.1 §5.1: tab, LF, CR and printable Unicode).
  NUL, ESC and other control characters, and bytes that are not UTF-8, are reported each at
  its line and column (at most `MAX_REPORTED` of them).
- **At most `MAX_DEPTH` (64) levels of nesting**, checked while composing, so 100k nested `[`
  stop at level 65 instead of exhausting the interpreter's stack.
- **At most `MAX_VALUES` (1,000,000) values written** (the 1,000-router expansion has 433k;
  each costs ~250 bytes while composing), and **at most `MAX_ALIASED` (100,000) more reached
  through aliases**: an alias bomb ("billion laughs": nine aliases of nine aliases...) stops
  there instead of exhausting memory, however small the file. A recursive alias (`&a [*a]`)
  is reported as such.
- **Only the plain YAML types** (SafeLoader): a `!!python/...` tag is a placed error.

Positions: PyYAML's composer knows the line and column of each node; its constructor forgets
them. `load_text` composes the node graph itself and keeps two side tables, the position of
every value and of every mapping key, addressed by the *path* to it (`("links", 2, "mtu")`).
Duplicate mapping keys, which PyYAML silently resolves to the last one, are reported. Lines and
columns are 1-based, as editors and compilers print them.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 16 << 20
MAX_DEPTH = 64
MAX_VALUES = 1_000_000
MAX_ALIASED = 100_000
MAX_REPORTED = 20
"""At most this many character/encoding problems are listed (then one line saying more)."""

KeyPart = str | int
KeyPath = tuple[KeyPart, ...]

MAP_TAG = "tag:yaml.org,2002:map"
SEQ_TAG = "tag:yaml.org,2002:seq"

# YAML 1.1 §5.1 c-printable, less the BOM it allows anywhere (harmless) and NEL (kept).
_NOT_PRINTABLE = re.compile(
    "[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CONTROL_NAMES = {0: "NUL", 0x1B: "ESC", 0x7F: "DEL", 0x08: "BS", 0x0C: "FF", 0x0B: "VT"}


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input file, with its place and, when there is one, a hint."""

    file: str
    line: int
    """1-based; 0 when the problem has no place in a file (data not read from one)."""
    col: int
    path: str
    """Where inside the document, e.g. `links[2].mtu` (see format_path); "" for the file."""
    message: str
    hint: str = ""

    def __str__(self) -> str:
        place = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        text = ": ".join(part for part in (place, self.path, self.message) if part)
        return f"{text} ({self.hint})" if self.hint else text


class YamlSourceError(ValueError):
    """The file could not be loaded as YAML at all; `.problems` lists why, each placed."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Mark:
    """A place in the YAML text (1-based line and column)."""

    line: int
    col: int


@dataclass
class Document:
    """Plain data (dict/list/scalars) plus the position of each value and key."""

    source: str
    data: Any = None
    values: dict[KeyPath, Mark] = field(default_factory=dict)
    keys: dict[KeyPath, Mark] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    """What the YAML itself allowed but a vrlab file must not contain (duplicate keys...)."""

    def mark(self, path: KeyPath) -> Mark:
        """Where the value at `path` starts; for a missing value, its closest ancestor."""
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, Mark(1, 1))

    def key_mark(self, path: KeyPath) -> Mark:
        """Where the mapping key naming `path` starts (the value's place if it has no key)."""
        if path in self.keys:
            return self.keys[path]
        return self.mark(path)

    def problem(self, path: KeyPath, message: str, hint: str = "", *, key: bool = False
                ) -> Problem:
        """A Problem placed at the value (or, with `key`, the key) at `path`."""
        mark = self.key_mark(path) if key else self.mark(path)
        if not self.values:  # a Document for data that came from no file: no place
            mark = Mark(0, 0)
        return Problem(self.source, mark.line, mark.col, format_path(path), message, hint)


def format_path(path: KeyPath) -> str:
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


# -- reading ----------------------------------------------------------------------------------


def read_text(path: str | Path, source: str | None = None) -> str:
    """The file's text, if it is a regular file of at most MAX_BYTES of UTF-8."""
    source = str(path) if source is None else source

    def refuse(message: str, hint: str = "") -> YamlSourceError:
        return YamlSourceError([Problem(source, 1, 1, "file", message, hint)])

    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (fstat refuses it next).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise refuse(f"cannot read: {e.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = ("a directory" if stat.S_ISDIR(info.st_mode) else
                    "a FIFO" if stat.S_ISFIFO(info.st_mode) else
                    "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else
                    "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file")
            raise refuse(f"cannot read: this is {kind}", "give a YAML file")
        if info.st_size > MAX_BYTES:
            raise refuse(f"file is {info.st_size} bytes, more than the limit of "
                         f"{MAX_BYTES} bytes (16 MiB)")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_BYTES:  # bounded even if the file grows while we read it
            chunk = os.read(fd, MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise refuse(f"cannot read: {e.strerror}") from None
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if len(raw) > MAX_BYTES:
        raise refuse(f"file is more than the limit of {MAX_BYTES} bytes (16 MiB)")
    return decode(raw, source)


def decode(raw: bytes, source: str) -> str:
    """UTF-8 `raw` as text; every byte sequence that is not UTF-8 becomes a placed Problem."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    problems: list[Problem] = []
    start = 0
    more = False
    while start < len(raw):
        if len(problems) == MAX_REPORTED:
            more = True
            break
        try:
            raw[start:].decode("utf-8")
            break
        except UnicodeDecodeError as e:
            bad = start + e.start
            line = raw.count(b"\n", 0, bad) + 1
            line_start = raw.rfind(b"\n", 0, bad) + 1
            col = len(raw[line_start:bad].decode("utf-8", errors="replace")) + 1
            problems.append(Problem(source, line, col, "file",
                                    f"byte 0x{raw[bad]:02x} is not UTF-8 text",
                                    "save the file as UTF-8"))
            start = start + e.end
    return _raise_with_more(problems, source, more=more)


def check_characters(text: str, source: str) -> list[Problem]:
    """A Problem for each character YAML does not allow (NUL, ESC, other controls)."""
    problems: list[Problem] = []
    for match in _NOT_PRINTABLE.finditer(text):
        if len(problems) == MAX_REPORTED:
            problems.append(Problem(source, 0, 0, "file",
                                    f"more characters that are not allowed after these "
                                    f"{MAX_REPORTED}"))
            break
        pos = match.start()
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        code = ord(match.group())
        name = _CONTROL_NAMES.get(code, "a control character")
        problems.append(Problem(source, line, col, "file",
                                f"character U+{code:04X} ({name}) is not allowed in YAML",
                                "remove it, or write it as an escape in a double-quoted "
                                "string"))
    return problems


def _raise_with_more(problems: list[Problem], source: str, *, more: bool) -> str:
    if more:
        problems.append(Problem(source, 0, 0, "file",
                                f"more bytes that are not UTF-8 after these {len(problems)}"))
    raise YamlSourceError(problems)


# -- parsing ----------------------------------------------------------------------------------


class _Limit(Exception):
    """A bound was crossed at `mark` (internal: becomes a Problem)."""

    def __init__(self, message: str, mark: Mark, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.mark, self.hint = message, mark, hint


def _mark(node: Any) -> Mark:
    """Where a node or event starts (1-based)."""
    start = node.start_mark
    return Mark(start.line + 1, start.column + 1) if start is not None else Mark(1, 1)


_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser when PyYAML has it (about 40x faster than the pure-Python one, which
stays the fallback); either way only its event stream is used, composed below."""


def _compose(loader: Any) -> tuple[yaml.Node | None, int]:
    """The single document's node graph and how many values it wrote, built from the parser's
    events without recursion.

    PyYAML's own composer recurses once per nesting level (100k `[` is a RecursionError), and
    libyaml's, in C, would use the C stack; this one keeps an explicit stack, stops at
    MAX_DEPTH levels and MAX_VALUES nodes, and places each limit at the event crossing it.
    As in PyYAML, an anchor names its collection from the start, so `&a [*a]` composes (to a
    graph with a cycle, which the builder reports).
    """
    anchors: dict[str, yaml.Node] = {}
    stack: list[yaml.Node] = []
    pending_key: list[yaml.Node | None] = []
    root: yaml.Node | None = None
    documents = 0
    count = 0

    def attach(node: yaml.Node) -> None:
        nonlocal root
        if not stack:
            root = node
            return
        parent = stack[-1]
        if isinstance(parent, yaml.SequenceNode):
            parent.value.append(node)
        elif pending_key[-1] is None:
            pending_key[-1] = node
        else:
            parent.value.append((pending_key[-1], node))
            pending_key[-1] = None

    while True:
        event = loader.get_event()
        if isinstance(event, yaml.StreamEndEvent):
            return root, count
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise _Limit("a second document in the file", _mark(event),
                             "one document per file: remove the second `---`")
            continue
        if isinstance(event, yaml.StreamStartEvent | yaml.DocumentEndEvent):
            continue
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:
                raise _Limit(f"alias *{event.anchor} names no anchor before it", _mark(event))
            attach(anchors[event.anchor])
            continue
        if isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            stack.pop()
            pending_key.pop()
            continue
        count += 1
        if count > MAX_VALUES:
            raise _Limit(f"more than {MAX_VALUES} values", _mark(event),
                         "a vrlab file needs far fewer")
        node: yaml.Node
        if isinstance(event, yaml.ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
            node = yaml.ScalarNode(tag, event.value, event.start_mark,  # type: ignore[arg-type]
                                   event.end_mark, style=event.style)  # type: ignore[arg-type]
        else:
            if len(stack) >= MAX_DEPTH:
                raise _Limit(f"nested more than {MAX_DEPTH} levels deep", _mark(event),
                             "flatten the structure")
            tag = event.tag
            is_seq = isinstance(event, yaml.SequenceStartEvent)
            kind = yaml.SequenceNode if is_seq else yaml.MappingNode
            if tag is None or tag == "!":
                tag = loader.resolve(kind, None, event.implicit)
            node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
        if event.anchor is not None:
            anchors[event.anchor] = node
        attach(node)
        if not isinstance(node, yaml.ScalarNode):
            stack.append(node)
            pending_key.append(None)


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, doc: Document, written: int) -> None:
        self.loader = loader
        self.doc = doc
        self.count = 0
        self.limit = written + MAX_ALIASED
        """Values the file wrote, plus at most MAX_ALIASED more reached through aliases."""
        self.open: set[int] = set()
        """Collections being built right now: meeting one again is a recursive alias."""

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.count += 1
        if self.count > self.limit:
            raise _Limit(f"more than {MAX_ALIASED} values reached through aliases",
                         _mark(node), "an alias bomb? repeat less through aliases")
        if len(path) > MAX_DEPTH:
            raise _Limit(f"nested more than {MAX_DEPTH} levels deep after expanding aliases",
                         _mark(node), "flatten the structure")
        self.doc.values[path] = _mark(node)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if node.tag not in (MAP_TAG, SEQ_TAG):
            raise _Limit(f"unsupported tag {node.tag!r}", _mark(node),
                         "only plain YAML mappings, lists and scalars")
        if id(node) in self.open:
            raise _Limit("recursive alias: this collection contains itself", _mark(node))
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as e:  # an unknown tag, an invalid !!timestamp...
            raise _Limit(str(e.problem or e), _mark(node)) from None
        except (ValueError, OverflowError) as e:  # e.g. an integer of 5,000 digits
            raise _Limit(f"invalid value: {e}", _mark(node)) from None

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.doc.problems.append(Problem(
                    self.doc.source, *_astuple(_mark(key_node)), format_path(path),
                    "a mapping key must be a plain scalar", "write the key as a string"))
                continue
            key = self._scalar(key_node)
            if isinstance(key, bool | float) or key is None or not isinstance(key, str | int):
                # `yes:`/`on:`/`1.5:`/`~:` become bool/float/None in YAML 1.1: keep the text,
                # the validator will then name the key the user actually wrote.
                key = key_node.value
            sub = (*path, key)
            if key in result:
                first = self.doc.keys[sub]
                self.doc.problems.append(Problem(
                    self.doc.source, *_astuple(_mark(key_node)), format_path(sub),
                    f"duplicate key {key!r}",
                    f"first defined at line {first.line} column {first.col}"))
                continue
            self.doc.keys[sub] = _mark(key_node)
            result[key] = self.build(value_node, sub)
        return result


def _astuple(mark: Mark) -> tuple[int, int]:
    return mark.line, mark.col


def _syntax_problem(e: yaml.YAMLError, source: str) -> Problem:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = Mark(mark.line + 1, mark.column + 1) if mark is not None else Mark(1, 1)
    if isinstance(e, yaml.MarkedYAMLError):
        message = str(e.problem or e.context or "invalid YAML")
        if e.context and e.problem and e.context_mark is not None:
            message += (f" ({e.context} at line {e.context_mark.line + 1} column "
                        f"{e.context_mark.column + 1})")
    else:
        message = str(e)
    return Problem(source, where.line, where.col, "yaml", f"invalid YAML: {message}")


def load_text(text: str, source: str = "<yaml>") -> Document:
    """Parse one YAML document; YamlSourceError (every problem, placed) if it cannot be."""
    problems = check_characters(text, source)
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        problems.append(Problem(source, 1, 1, "file",
                                f"text is more than the limit of {MAX_BYTES} bytes (16 MiB)"))
    if problems:
        raise YamlSourceError(problems)
    doc = Document(source)
    loader = _LOADER(text)
    try:
        node, written = _compose(loader)
        if node is None:
            doc.values[()] = Mark(1, 1)
            return doc
        doc.data = _Builder(loader, doc, written).build(node, ())
        return doc
    except _Limit as e:
        problem = Problem(source, e.mark.line, e.mark.col, "yaml", e.message, e.hint)
        raise YamlSourceError([problem]) from None
    except yaml.YAMLError as e:
        raise YamlSourceError([_syntax_problem(e, source)]) from None
    except RecursionError:  # pragma: no cover - MAX_DEPTH keeps far below the stack limit
        raise YamlSourceError([Problem(source, 1, 1, "yaml", "nested too deeply")]) from None
    finally:
        loader.dispose()


def load_file(path: str | Path, source: str | None = None) -> Document:
    """`read_text` then `load_text`: the whole safe path from a file name to a Document."""
    source = str(path) if source is None else source
    return load_text(read_text(path, source), source)
