"""pytest plugin for vrlab labs (entry point `vrlab` in pyproject.toml).

```python
import pytest

@pytest.mark.vrlab_topology("configs/line.yaml")
def test_h1_reaches_h2(lab):
    assert lab.ping("h1", "h2", family=6, count=3).ok
    assert lab.node("r1").exec("routerctl show routes").exit_status == 0
```

- The topology comes from the closest `vrlab_topology(path)` marker (test, class or module),
  else from `--vrlab-topology FILE`; a relative path is looked up from the rootdir, then from
  the test file's directory.
- `lab` is session-scoped and the topology is its (indirect, session-scoped) parameter, so
  pytest groups the tests of each topology: the lab is brought up once, before the first of
  them, and taken down after the last, also when tests fail (and at the end of the session if
  the run is interrupted; `--vrlab-keep` leaves labs up). Test ids get the topology's name,
  e.g. `test_ping[line]`. Tests of different topologies can share a session; one lab is up at
  a time.
- When a test using `lab` fails, its report gets a section per node with the tail of the
  node's serial log and, for routers, `routerctl show stats`; the pcaps the test captured
  (`lab.capture` without a path) and every node's whole serial log are kept under pytest's
  temporary directory (`<basetemp>/vrlab-failed-<test>N/`) and named in the report's
  "vrlab evidence kept" section. Passing tests' pcaps are removed with their lab.
- Override the session fixture `vrlab_lab_factory` (topology -> lab object) to run against
  something other than `orchestrate.lab.Lab.up` (a fake lab in unit tests).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate.checks import (
    CheckResult,
    CheckRunner,
    PingResult,
    excerpt,
    ping,
    validate_check,
)
from orchestrate.choices import ACCELS, BACKENDS
from orchestrate.topology import CheckSpec, Topology, TopologyError, load_topology

SERIAL_TAIL_LINES = 40
POOL_KEY = pytest.StashKey["LabPool"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vrlab")
    group.addoption("--vrlab-topology", metavar="FILE", default=None,
                    help="topology file for the `lab` fixture (a vrlab_topology marker wins)")
    group.addoption("--vrlab-backend", default=None, choices=BACKENDS,
                    help="backend for labs the tests bring up (default: the file's)")
    group.addoption("--vrlab-accel", default=None, choices=ACCELS,
                    help="acceleration for labs the tests bring up (default: the file's)")
    group.addoption("--vrlab-keep", action="store_true", default=False,
                    help="leave the labs up at the end of the session")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "vrlab_topology(path): the topology file the `lab` fixture brings up")


class LabSession:
    """What the `lab` fixture gives a test: the running lab plus check helpers."""

    def __init__(self, lab: Any, topology: Topology, directory: Path | None = None) -> None:
        self.raw = lab
        """The underlying lab (orchestrate.lab.Lab, or a fake)."""
        self.topology = topology
        self.runner = CheckRunner(lab, topology)
        self._tmp = directory or Path(tempfile.mkdtemp(prefix=f"vrlab-{topology.name}-"))
        self._serial = itertools.count()
        self._captures: list[Path] = []
        """pcaps `capture` made in its own directory since the last `take_captures`."""

    @property
    def name(self) -> str:
        return self.topology.name

    def node(self, name: str) -> Any:
        """The node's handle: `.exec(cmd, timeout) -> ExecResult(exit_status, stdout, stderr)`."""
        if name not in self.topology.nodes:
            raise KeyError(f"lab {self.name} has no node {name!r} "
                           f"(nodes: {', '.join(self.topology.nodes)})")
        return self.raw.node(name)

    def ping(self, src: str, dst: str, family: int | None = 4, count: int = 1,
             **options: Any) -> PingResult:
        """iputils ping from node `src` to `dst` (node, node:ifname or address).

        options: size, df, ttl, wait, timeout. The result has `.ok`, `.received`, `.errors`.
        """
        return ping(self.raw, self.topology, src, dst, family=family, count=count, **options)

    def capture(self, node: str, ifname: str, path: str | Path | None = None
                ) -> contextlib.AbstractContextManager[Any]:
        """Capture node:ifname into a pcap (a temporary file unless `path` is given)."""
        if path is None:
            path = self._tmp / f"{node}-{ifname}-{next(self._serial)}.pcap"
            self._captures.append(path)
        return self.raw.capture(node, ifname, Path(path))

    def take_captures(self) -> list[Path]:
        """The pcaps `capture` made since the last call (the current test's)."""
        taken, self._captures = self._captures, []
        return taken

    def keep_evidence(self, directory: Path) -> list[Path]:
        """Move the current test's pcaps into `directory` and copy every node's serial log
        there (`NODE-serial.log`); return the files kept."""
        kept: list[Path] = []
        for pcap in self.take_captures():
            if pcap.is_file():
                kept.append(Path(shutil.move(pcap, directory / pcap.name)))
        for name in self.topology.nodes:
            with contextlib.suppress(Exception):  # evidence must never hide the failure
                log = getattr(self.raw.node(name), "serial_log", None)
                if log is not None and Path(log).is_file():
                    kept.append(Path(shutil.copyfile(log, directory / f"{name}-serial.log")))
        return kept

    def counters(self, router: str) -> dict[str, int]:
        """`routerctl show stats --json` of a router, as {"ip.forward": 3, ...}."""
        return self.runner.counters(router)

    def check(self, kind: str, **params: Any) -> CheckResult:
        """Run one check as the tests: section would (`from` may be given as `from_`)."""
        item = {"kind": kind, **{k.rstrip("_"): v for k, v in params.items()}}
        problems, valid = validate_check(item, self.topology)
        if problems or valid is None:
            raise ValueError("; ".join(f"{p.path}: {p.message}" for p in problems))
        return self.runner.run(CheckSpec(valid.kind, valid.name, valid.params, "<test>", 0, 0))

    def evidence(self) -> list[tuple[str, str]]:
        """Report sections for a failed test: serial log tails and router counters."""
        sections: list[tuple[str, str]] = []
        for name, node in self.topology.nodes.items():
            try:
                handle = self.raw.node(name)
                log = getattr(handle, "serial_log", None)
                if log is not None and Path(log).is_file():
                    text = Path(log).read_text(errors="replace")
                    tail = "\n".join(text.splitlines()[-SERIAL_TAIL_LINES:])
                    sections.append((f"vrlab {name} serial log (last {SERIAL_TAIL_LINES} lines)",
                                     tail))
                if node.is_router:
                    result = handle.exec("routerctl show stats", 20.0)
                    body = result.stdout if result.exit_status == 0 else (
                        f"exit {result.exit_status}\n{result.stdout}{result.stderr}")
                    sections.append((f"vrlab {name} routerctl show stats", excerpt(body, 200)))
            except Exception as e:  # evidence must never hide the real failure
                sections.append((f"vrlab {name}", f"could not collect: {type(e).__name__}: {e}"))
        return sections

    def close(self) -> None:
        with contextlib.suppress(OSError):
            for path in self._tmp.iterdir():
                path.unlink()
            self._tmp.rmdir()


class LabPool:
    """Labs of this session by topology file: up on first use, all down at the end."""

    def __init__(self, factory: Callable[[Topology], Any], keep: bool = False,
                 tmp: pytest.TempPathFactory | None = None) -> None:
        self.factory = factory
        self.keep = keep
        self.tmp = tmp
        """pytest's temporary directories: captures and a failed test's evidence go there."""
        self.sessions: dict[Path, LabSession] = {}
        self.failures: dict[Path, str] = {}

    def get(self, path: Path) -> LabSession:
        path = path.resolve()
        if path in self.sessions:
            return self.sessions[path]
        if path in self.failures:  # do not boot a broken lab again for every test
            pytest.fail(self.failures[path], pytrace=False)
        lab: Any = None
        try:
            topology = load_topology(path)
            lab = self.factory(topology)
        except TopologyError as e:
            self.failures[path] = f"vrlab: invalid topology:\n{e}"
        except Exception as e:
            self.failures[path] = f"vrlab: lab {topology.name} did not come up: {e}"
        if path in self.failures:  # failed outside the except blocks: no chained traceback
            pytest.fail(self.failures[path], pytrace=False)
        directory = self.tmp.mktemp(f"vrlab-{topology.name}") if self.tmp else None
        self.sessions[path] = LabSession(lab, topology, directory)
        return self.sessions[path]

    def evidence_dir(self, test: str) -> Path:
        """A fresh directory for a failed test's evidence, under pytest's basetemp when the
        pool has it (pytest keeps the last few basetemps), else a temporary directory."""
        name = "vrlab-failed-" + re.sub(r"[^\w.-]", "_", test)[:40]
        if self.tmp is not None:
            return self.tmp.mktemp(name)
        return Path(tempfile.mkdtemp(prefix=f"{name}-"))

    def release(self, path: Path) -> list[str]:
        """Take the lab of `path` down (unless keep); return teardown problems."""
        session = self.sessions.pop(path.resolve(), None)
        if session is None:
            return []
        session.close()
        if self.keep:
            return []
        try:
            return list(session.raw.down() or [])
        except Exception as e:
            return [f"{session.name}: {type(e).__name__}: {e}"]

    def close(self) -> list[str]:
        """Take every lab still up down (unless keep); return teardown problems."""
        problems: list[str] = []
        for path in list(self.sessions):
            problems.extend(self.release(path))
        return problems


@pytest.fixture(scope="session")
def vrlab_lab_factory(pytestconfig: pytest.Config) -> Callable[[Topology], Any]:
    """topology -> running lab; the default boots VMs with orchestrate.lab.Lab.up."""
    backend = pytestconfig.getoption("--vrlab-backend")
    accel = pytestconfig.getoption("--vrlab-accel")

    def factory(topology: Topology) -> Any:
        from orchestrate.lab import Lab

        return Lab.up(topology, backend=backend or topology.defaults.backend,
                      accel=accel or topology.defaults.accel)

    return factory


@pytest.fixture(scope="session")
def vrlab_labs(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory,
               vrlab_lab_factory: Callable[[Topology], Any]) -> Iterator[LabPool]:
    """The session's labs; every one is taken down when the session ends."""
    pool = LabPool(vrlab_lab_factory, keep=pytestconfig.getoption("--vrlab-keep"),
                   tmp=tmp_path_factory)
    pytestconfig.stash[POOL_KEY] = pool
    try:
        yield pool
    finally:
        problems = pool.close()
        if problems:
            warnings.warn(pytest.PytestWarning("vrlab teardown: " + "; ".join(problems)),
                          stacklevel=1)


def _topology_path(config: pytest.Config, marker: pytest.Mark | None, test_dir: Path
                   ) -> Path | None:
    given = marker.args[0] if marker is not None and marker.args else config.getoption(
        "--vrlab-topology")
    if not given:
        return None
    path = Path(given)
    if path.is_absolute():
        return path
    for base in (config.rootpath, test_dir, Path.cwd()):
        if (base / path).exists():
            return (base / path).resolve()
    return config.rootpath / path


def _uses_our_lab(metafunc: pytest.Metafunc) -> bool:
    """True if the `lab` this test gets is this plugin's (a conftest may define its own)."""
    info = getattr(metafunc.definition, "_fixtureinfo", None)
    defs = getattr(info, "name2fixturedefs", {}).get("lab") if info is not None else None
    if not defs:
        return "lab" in metafunc.fixturenames
    func = getattr(defs[-1], "func", None)
    # pytest >= 8.4 wraps fixture functions (FixtureFunctionDefinition); older ones do not
    return func is lab or func is getattr(lab, "__wrapped__", None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # The topology is a session-scoped indirect parameter of `lab`: pytest then groups the
    # tests of one topology together, boots that lab once and takes it down after its last
    # test (before the next topology's lab boots), pass or fail.
    if "lab" not in metafunc.fixturenames or not _uses_our_lab(metafunc):
        return
    marker = metafunc.definition.get_closest_marker("vrlab_topology")
    path = _topology_path(metafunc.config, marker, Path(str(metafunc.definition.path)).parent)
    if path is not None:
        metafunc.parametrize("lab", [path], indirect=True, scope="session", ids=[path.stem])


def _topology_param(item: pytest.Item) -> Any:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return params.get("lab")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # pytest groups session-scoped parameters by their index, and each test's only topology
    # has index 0: group the `lab` tests by topology ourselves (stable, in the slots they
    # already hold, so tests without a lab keep their places) to boot each lab once.
    slots = [i for i, item in enumerate(items) if _topology_param(item) is not None]
    first_seen: dict[Any, int] = {}
    for i in slots:
        first_seen.setdefault(_topology_param(items[i]), i)
    grouped = sorted((items[i] for i in slots), key=lambda it: first_seen[_topology_param(it)])
    for slot, item in zip(slots, grouped, strict=True):
        items[slot] = item


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest, vrlab_labs: LabPool) -> Iterator[LabSession]:
    """The running lab of the test's topology: booted once, down after its last test."""
    path: Path | None = getattr(request, "param", None)
    if path is None:
        pytest.fail("the `lab` fixture needs a topology: mark the test with "
                    "@pytest.mark.vrlab_topology(\"configs/line.yaml\") or pass "
                    "--vrlab-topology FILE", pytrace=False)
    session = vrlab_labs.get(path)
    try:
        yield session
    finally:
        vrlab_labs.release(path)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    session = getattr(item, "funcargs", {}).get("lab")
    if report.when != "call" or not isinstance(session, LabSession):
        return report
    if not report.failed:
        session.take_captures()  # a passing test's pcaps stay until its lab goes down
        return report
    for title, text in session.evidence():
        report.sections.append((title, text))
    pool = item.config.stash.get(POOL_KEY, None)
    if pool is not None:
        try:
            kept = session.keep_evidence(pool.evidence_dir(item.name))
        except OSError as e:  # evidence must never hide the real failure
            report.sections.append(("vrlab evidence kept", f"could not keep: {e}"))
        else:
            report.sections.append(("vrlab evidence kept",
                                    "\n".join(str(path) for path in kept) or "nothing"))
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Normally the vrlab_labs finalizer has run already; after an interrupt it may not have.
    pool = session.config.stash.get(POOL_KEY, None)
    if pool is not None:
        pool.close()
