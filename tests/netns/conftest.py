"""Fixtures for the netns tests. The helpers and topologies (`build_line`, `build_lan`) are in
the package itself (tests/netns/__init__.py, imported as `netns`): tests/netns is a package so
that this file is `netns.conftest`, not a second top-level `conftest` next to tests/unit's
(whose test modules `from conftest import ...` when `make test` collects both at once)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from netns import MODES, Lab, Lan, Line, build_lan, build_line, remove_stale


def _usable() -> str | None:
    if os.geteuid() != 0:
        return "netns tests need root"
    for tool in ("ip", "ping", "ethtool"):
        if shutil.which(tool) is None:
            return f"netns tests need {tool}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _usable()
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.netns)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _no_stale_namespaces() -> None:
    if _usable() is None:
        remove_stale()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A Lab for one test; everything it made is removed afterwards, pass or fail."""
    with Lab(tmp_path) as the_lab:
        yield the_lab


@pytest.fixture(scope="module", params=MODES)
def line(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Line]:
    """h1 -- r -- h2 with the router running; shared by the tests of a module."""
    with Lab(tmp_path_factory.mktemp(f"line-{request.param}")) as the_lab:
        yield build_line(the_lab, request.param)


@pytest.fixture(params=MODES)
def fresh_line(request: pytest.FixtureRequest, lab: Lab) -> Line:
    """h1 -- r -- h2 built for one test, router not started (the test starts it)."""
    return build_line(lab, request.param, start=False)


@pytest.fixture(params=MODES)
def lan(request: pytest.FixtureRequest, lab: Lab) -> Lan:
    """The two-router LAN, built for one test (redirect state on h1 must start clean)."""
    return build_lan(lab, request.param)
