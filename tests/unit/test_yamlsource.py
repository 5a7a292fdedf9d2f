"""The one YAML loader (appliance.yamlsource): every hostile or broken input ends in placed
problems, never a traceback, a hang or an exhausted machine."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from appliance.yamlsource import (
    MAX_ALIASED,
    MAX_BYTES,
    MAX_DEPTH,
    MAX_VALUES,
    Mark,
    Problem,
    YamlSourceError,
    format_path,
    load_file,
    load_text,
)

NINE = ",".join(["*{0}"] * 9)
LAUGHS = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
    f"{chr(ord('a') + i + 1)}: &{chr(ord('a') + i + 1)} [{NINE.format(chr(ord('a') + i))}]\n"
    for i in range(8))


def problems(text: str) -> list[str]:
    with pytest.raises(YamlSourceError) as info:
        load_text(text, "f.yaml")
    assert str(info.value).splitlines() == [str(p) for p in info.value.problems]
    return [str(p) for p in info.value.problems]


def file_problems(path: Path | str) -> list[str]:
    with pytest.raises(YamlSourceError) as info:
        load_file(path, "f.yaml")
    return [str(p) for p in info.value.problems]


def test_positions_of_values_and_keys_and_duplicates() -> None:
    doc = load_text("a:\n  - x: 1\n    y: [2, 3]\nb: ok\nb: again\n", "f.yaml")
    assert doc.data == {"a": [{"x": 1, "y": [2, 3]}], "b": "ok"}
    assert doc.mark(("a", 0, "y", 1)) == Mark(3, 12)
    assert doc.key_mark(("a", 0, "y")) == Mark(3, 5)
    assert doc.mark(("a", 0, "missing")) == Mark(2, 5)
    assert [str(p) for p in doc.problems] == [
        "f.yaml:5:1: b: duplicate key 'b' (first defined at line 4 column 1)"]
    assert str(doc.problem(("a", 0, "y"), "bad", "a hint", key=True)) == \
        "f.yaml:3:5: a[0].y: bad (a hint)"
    assert format_path(("nodes", "r1", "sysctl", "net.inet.ip.ttl")) == \
        "nodes.r1.sysctl['net.inet.ip.ttl']"


def test_yaml_1_1_keys_keep_their_text() -> None:
    assert load_text("nodes:\n  on: {role: host}\n  2001-01-01: x\n").data == {
        "nodes": {"on": {"role": "host"}, "2001-01-01": "x"}}


def test_problem_without_a_place() -> None:
    assert str(Problem("cfg", 0, 0, "routes[0]", "bad")) == "cfg: routes[0]: bad"
    assert str(Problem("cfg", 2, 3, "", "bad", "hint")) == "cfg:2:3: bad (hint)"


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(LAUGHS, [f"f.yaml:1:4: yaml: more than {MAX_ALIASED} values reached "
                          "through aliases (an alias bomb? repeat less through aliases)"],
                 id="billion-laughs"),
    pytest.param("a: &a [1, *a]\n",
                 ["f.yaml:1:4: yaml: recursive alias: this collection contains itself"],
                 id="recursive-sequence"),
    pytest.param("a: &a {b: {c: *a}}\n",
                 ["f.yaml:1:4: yaml: recursive alias: this collection contains itself"],
                 id="recursive-mapping"),
    pytest.param("[" * 100_000, [f"f.yaml:1:{MAX_DEPTH + 1}: yaml: nested more than "
                                 f"{MAX_DEPTH} levels deep (flatten the structure)"],
                 id="100k-flow-sequences"),
    pytest.param("{a: " * 100_000, [f"f.yaml:1:{4 * MAX_DEPTH + 1}: yaml: nested more than "
                                    f"{MAX_DEPTH} levels deep (flatten the structure)"],
                 id="100k-flow-mappings"),
    pytest.param("".join(" " * i + "a:\n" for i in range(200)),
                 [f"f.yaml:{MAX_DEPTH + 1}:{MAX_DEPTH + 1}: yaml: nested more than "
                  f"{MAX_DEPTH} levels deep (flatten the structure)"], id="deep-block"),
    pytest.param("x: [" + ",".join(["1"] * (MAX_VALUES + 10)) + "]\n",
                 [f"f.yaml:1:{5 + 2 * (MAX_VALUES - 3)}: yaml: more than {MAX_VALUES} values "
                  "(a vrlab file needs far fewer)"], id="too-many-values"),
    pytest.param("name: a\x00b\nx: \x1b[31mred\n", [
        "f.yaml:1:8: file: character U+0000 (NUL) is not allowed in YAML (remove it, or write "
        "it as an escape in a double-quoted string)",
        "f.yaml:2:4: file: character U+001B (ESC) is not allowed in YAML (remove it, or write "
        "it as an escape in a double-quoted string)"], id="nul-and-esc"),
    pytest.param("x: " + "1" * 5000 + "\n", [
        "f.yaml:1:4: yaml: invalid value: Exceeds the limit (4300 digits) for integer string "
        "conversion: value has 5000 digits; use sys.set_int_max_str_digits() to increase the "
        "limit"], id="5000-digit-integer"),
    pytest.param("x: !!python/object/apply:os.system ['true']\n", [
        "f.yaml:1:4: yaml: unsupported tag 'tag:yaml.org,2002:python/object/apply:os.system' "
        "(only plain YAML mappings, lists and scalars)"], id="python-tag"),
    pytest.param("x: !!python/name:os.system\n", [
        "f.yaml:1:4: yaml: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/name:os.system'"], id="python-name"),
    pytest.param("a: 1\n---\nb: 2\n", ["f.yaml:2:1: yaml: a second document in the file "
                                       "(one document per file: remove the second `---`)"],
                 id="two-documents"),
    pytest.param("a: *nowhere\n", ["f.yaml:1:4: yaml: alias *nowhere names no anchor before it"],
                 id="undefined-alias"),
    pytest.param("a: 2001-13-45\n", ["f.yaml:1:4: yaml: invalid value: month must be in 1..12"],
                 id="bad-timestamp"),
    pytest.param("name: t\nnodes:\n  h1: {role: host\n    x: : y\n", [
        "f.yaml:4:6: yaml: invalid YAML: did not find expected ',' or '}' (while parsing a "
        "flow mapping at line 3 column 7)"], id="syntax"),
])
def test_bad_text_is_placed(text: str, expected: list[str]) -> None:
    assert problems(text) == expected


def test_many_control_characters_are_all_reported_up_to_a_bound() -> None:
    got = problems("a: " + "\x07" * 50 + "\n")
    assert len(got) == 21
    assert got[0].startswith("f.yaml:1:4: file: character U+0007 (a control character)")
    assert got[19].startswith("f.yaml:1:23: ")
    assert got[20] == "f.yaml: file: more characters that are not allowed after these 20"


def test_not_utf8_is_placed(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"name: \xff\xfe ok\nx: caf\xc3\n")
    assert file_problems(path) == [
        "f.yaml:1:7: file: byte 0xff is not UTF-8 text (save the file as UTF-8)",
        "f.yaml:1:8: file: byte 0xfe is not UTF-8 text (save the file as UTF-8)",
        "f.yaml:2:7: file: byte 0xc3 is not UTF-8 text (save the file as UTF-8)",
    ]


def test_too_big_a_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as f:
        f.truncate(50 * MAX_BYTES)  # 50 MiB, sparse: the old loader read and parsed it all
    assert file_problems(path) == [
        f"f.yaml:1:1: file: file is {50 * MAX_BYTES} bytes, more than the limit of "
        f"{MAX_BYTES} bytes (16 MiB)"]


@pytest.mark.parametrize(("path", "kind"), [("/dev/zero", "a device"), ("/", "a directory")])
def test_not_a_regular_file(path: str, kind: str) -> None:
    assert file_problems(path) == [f"f.yaml:1:1: file: cannot read: this is {kind} "
                                   "(give a YAML file)"]


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "topo.yaml"
    os.mkfifo(fifo)
    result: list[list[str]] = []
    reader = threading.Thread(target=lambda: result.append(file_problems(fifo)), daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # unblock the old behaviour so the test fails instead of hanging
        with open(fifo, "w"):
            pass
        reader.join(5)
    assert result == [["f.yaml:1:1: file: cannot read: this is a FIFO (give a YAML file)"]]


def test_missing_file() -> None:
    assert file_problems("/nonexistent/x.yaml") == [
        "f.yaml:1:1: file: cannot read: No such file or directory"]


def test_empty_and_scalar_documents() -> None:
    assert load_text("").data is None
    assert load_text("hello").data == "hello"
    doc = load_text("? [a]\n: 1\n", "f.yaml")
    assert [str(p) for p in doc.problems] == [
        "f.yaml:1:3: top level: a mapping key must be a plain scalar (write the key as a "
        "string)"]
