"""JUnit XML for check results, the format CI systems (GitLab, Jenkins, GitHub actions) read.

One `<testsuite>` per lab run; one `<testcase>` per check with `classname` `vrlab.<lab>.<kind>`
and the check's file and line; a failed check carries `<failure message=reason>` with the
command output or capture excerpt as its text.
"""

from __future__ import annotations

import datetime
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from orchestrate.checks import CheckResult

# Characters XML 1.0 cannot carry at all (ElementTree escapes markup but not these).
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: str) -> str:
    return _INVALID_XML.sub("\ufffd", text)


def junit_tree(results: Sequence[CheckResult], suite: str,
               timestamp: datetime.datetime | None = None) -> ET.ElementTree:
    stamp = (timestamp or datetime.datetime.now(datetime.UTC)).replace(microsecond=0)
    failures = sum(1 for r in results if not r.passed)
    total_time = sum(r.duration for r in results)
    root = ET.Element("testsuites", name="vrlab", tests=str(len(results)),
                      failures=str(failures), errors="0", time=f"{total_time:.3f}")
    suite_el = ET.SubElement(root, "testsuite", name=f"vrlab.{suite}", tests=str(len(results)),
                             failures=str(failures), errors="0", skipped="0",
                             time=f"{total_time:.3f}", timestamp=stamp.isoformat(),
                             hostname=socket.gethostname())
    for result in results:
        case = ET.SubElement(suite_el, "testcase", name=_clean(result.name),
                             classname=f"vrlab.{suite}.{result.spec.kind}",
                             time=f"{result.duration:.3f}", file=result.spec.file,
                             line=str(result.spec.line))
        if not result.passed:
            failure = ET.SubElement(case, "failure", message=_clean(result.reason),
                                    type="CheckFailed")
            failure.text = _clean(f"{result.reason}\n\n{result.detail}".strip())
        out = ET.SubElement(case, "system-out")
        out.text = _clean(f"attempts: {result.attempts}\n{result.reason}\n{result.detail}")
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(results: Sequence[CheckResult], path: str | Path, suite: str) -> None:
    """Write the results of a run of lab `suite` as JUnit XML to `path`."""
    junit_tree(results, suite).write(path, encoding="utf-8", xml_declaration=True)
