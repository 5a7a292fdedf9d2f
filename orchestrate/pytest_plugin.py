"""pytest plugin for vrlab labs (entry point `vrlab` in pyproject.toml).

Registers `--vrlab-topology FILE` and the marker `vrlab_topology(path)`; the `lab` fixture
follows in this module.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vrlab")
    group.addoption("--vrlab-topology", metavar="FILE", default=None,
                    help="topology file for the `lab` fixture (a vrlab_topology marker wins)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "vrlab_topology(path): the topology file the `lab` fixture brings up")
