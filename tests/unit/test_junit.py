"""JUnit XML: what CI reads back must say which checks failed and why."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from orchestrate.checks import CheckResult
from orchestrate.junit import write_junit
from orchestrate.topology import CheckSpec


def result(name: str, passed: bool, reason: str, detail: str = "", kind: str = "ping"
           ) -> CheckResult:
    spec = CheckSpec(kind, name, {}, "configs/line.yaml", 12, 5)
    return CheckResult(spec, passed, reason, detail, 1 if passed else 3, 0.25)


def test_junit_counts_failures_and_keeps_reasons(tmp_path: Path) -> None:
    path = tmp_path / "out.xml"
    write_junit([
        result("h1 -> h2", True, "3/3 replies"),
        result("ttl <1>", False, "expected time-exceeded, got 1/1 replies",
               "$ ping -t 1 198.51.100.66\n\x1b[31m1 received & more"),
        result("redirects", False, "ip.redirectsent 0 -> 0 (+0)", kind="counter"),
    ], path, "line")
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "vrlab.line"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "2", "0")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["h1 -> h2", "ttl <1>", "redirects"]
    assert [c.get("classname") for c in cases] == [
        "vrlab.line.ping", "vrlab.line.ping", "vrlab.line.counter"]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "expected time-exceeded, got 1/1 replies"
    assert failure.text is not None and "\ufffd[31m1 received & more" in failure.text
    assert (cases[1].get("file"), cases[1].get("line"), cases[1].get("time")) == (
        "configs/line.yaml", "12", "0.250")


def test_junit_empty_run(tmp_path: Path) -> None:
    path = tmp_path / "empty.xml"
    write_junit([], path, "duo")
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "0" and suite.get("failures") == "0"
