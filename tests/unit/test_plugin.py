"""The pytest plugin, exercised with pytester and a fake lab factory (no VMs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# A conftest for the inner session: the lab factory is a fake that logs up/down to a file and
# answers a few commands the way the real nodes would.
FAKE_CONFTEST = '''
import contextlib
from dataclasses import dataclass
from pathlib import Path

import pytest

LOG = Path(__file__).parent / "lab.log"


@dataclass
class Result:
    exit_status: int
    stdout: str
    stderr: str


class Node:
    def __init__(self, name):
        self.name = name
        self.serial_log = Path(__file__).parent / f"{name}.serial"
        self.serial_log.write_text("".join(f"{name} boot line {i}\\n" for i in range(100)))

    def exec(self, cmd, timeout=60.0):
        with LOG.open("a") as f:
            f.write(f"exec {self.name} {cmd}\\n")
        if cmd.startswith("ping "):
            target = cmd.split()[-1]
            return Result(0, f"1 packets transmitted, 1 received, 0% packet loss\\n", "")
        if cmd == "routerctl show stats":
            return Result(0, f"{self.name}: 42 packets forwarded\\n", "")
        if cmd == "routerctl show stats --json":
            return Result(0, '{"counters": {"ip.forward": 42}}', "")
        return Result(0, f"ran {cmd}", "")


class FakeLab:
    def __init__(self, topology):
        self.topology = topology
        self.nodes = {n: Node(n) for n in topology.nodes}

    def node(self, name):
        return self.nodes[name]

    @contextlib.contextmanager
    def capture(self, node, ifname, path):
        path.write_bytes(b"")
        yield path

    def down(self):
        with LOG.open("a") as f:
            f.write(f"down {self.topology.name}\\n")
        return []


@pytest.fixture(scope="session")
def vrlab_lab_factory():
    def factory(topology):
        with LOG.open("a") as f:
            f.write(f"up {topology.name}\\n")
        if topology.name == "pmtu":
            raise RuntimeError("qemu exploded")
        return FakeLab(topology)
    return factory
'''


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(FAKE_CONFTEST)
    (pytester.path / "configs").mkdir()
    for name in ("line", "duo", "pmtu"):
        shutil.copy(CONFIGS / f"{name}.yaml", pytester.path / "configs")
    return pytester


def log_lines(pytester: pytest.Pytester) -> list[str]:
    return (pytester.path / "lab.log").read_text().splitlines()


def test_lab_comes_up_once_and_goes_down_at_the_end(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_a='''
import pytest

pytestmark = pytest.mark.vrlab_topology("configs/line.yaml")


def test_ping(lab):
    result = lab.ping("h1", "h2", family=6, count=1)
    assert result.ok and result.received == 1


def test_exec(lab):
    assert lab.node("r1").exec("hostname", timeout=5).stdout == "ran hostname"


def test_counters(lab):
    assert lab.counters("r1") == {"ip.forward": 42}


def test_check(lab):
    assert lab.check("exec", node="h2", command="ping {h1.4}").passed
''')
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    assert log_lines(inner) == [
        "up line",
        "exec h1 ping -6 -n -c 1 -W 2 2001:db8:2::2",
        "exec r1 hostname",
        "exec r1 routerctl show stats --json",
        "exec h2 ping 198.51.100.2",
        "down line",
    ]


def test_failure_reports_serial_tails_and_router_stats(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_b='''
import pytest


@pytest.mark.vrlab_topology("configs/line.yaml")
def test_fails(lab):
    assert lab.node("h1").exec("false").exit_status == 1
''')
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*- vrlab r1 serial log (last 40 lines) -*",
        "r1 boot line 99",
        "*- vrlab r1 routerctl show stats -*",
        "r1: 42 packets forwarded",
        "*- vrlab h1 serial log (last 40 lines) -*",
    ])
    assert "r1 boot line 59" not in result.stdout.str()  # only the tail
    assert log_lines(inner)[-1] == "down line"  # down even though the test failed


def test_option_two_topologies_and_a_broken_lab(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_c='''
import pytest


def test_default_from_option(lab):
    assert lab.name == "duo"


@pytest.mark.vrlab_topology("configs/line.yaml")
def test_marker_wins(lab):
    assert lab.name == "line"


@pytest.mark.vrlab_topology("configs/pmtu.yaml")
def test_broken_1(lab):
    pass


@pytest.mark.vrlab_topology("configs/pmtu.yaml")
def test_broken_2(lab):
    pass
''')
    result = inner.runpytest("-p", "no:cacheprovider", "--vrlab-topology", "configs/duo.yaml")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(["*vrlab: lab pmtu did not come up: qemu exploded*"])
    lines = log_lines(inner)
    assert lines.count("up pmtu") == 1  # a lab that failed is not retried for every test
    assert sorted(line for line in lines if line.startswith("down")) == ["down duo", "down line"]


def test_missing_and_invalid_topology(inner: pytest.Pytester) -> None:
    (inner.path / "bad.yaml").write_text("nodes: {h1: {role: hub}}\n")
    inner.makepyfile(test_d='''
import pytest


def test_no_topology(lab):
    pass


@pytest.mark.vrlab_topology("bad.yaml")
def test_bad(lab):
    pass
''')
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([
        "*the `lab` fixture needs a topology*",
        "*bad.yaml:1:20: nodes.h1.role: role must be router, host or kernel-router, got 'hub'*",
    ])
    assert "During handling" not in result.stdout.str()
    assert not (inner.path / "lab.log").exists()  # nothing was brought up


def test_keep_leaves_labs_up(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_e='''
def test_up(lab):
    assert lab.name == "line"
''')
    result = inner.runpytest("-p", "no:cacheprovider", "--vrlab-topology", "configs/line.yaml",
                             "--vrlab-keep")
    result.assert_outcomes(passed=1)
    assert log_lines(inner) == ["up line"]


def test_groups_by_topology_and_module_fixtures_can_use_lab(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_f='''
import pytest


@pytest.fixture(scope="module")
def r1_forwarded(lab):
    return lab.counters("r1")["ip.forward"]


@pytest.mark.vrlab_topology("configs/line.yaml")
def test_line_1(lab, r1_forwarded):
    assert r1_forwarded == 42


@pytest.mark.vrlab_topology("configs/duo.yaml")
def test_duo(lab):
    assert lab.name == "duo"


@pytest.mark.vrlab_topology("configs/line.yaml")
def test_line_2(lab):
    assert lab.name == "line"
''')
    result = inner.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_line_1?line? PASSED*", "*test_duo?duo? PASSED*"])
    ups_and_downs = [line for line in log_lines(inner) if not line.startswith("exec")]
    # one lab at a time, each up once: the two line tests run together
    assert ups_and_downs in (["up line", "down line", "up duo", "down duo"],
                             ["up duo", "down duo", "up line", "down line"])


def test_a_conftest_lab_fixture_wins(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_g='''
import pytest


@pytest.fixture
def lab():
    return "my own lab"


def test_own(lab):
    assert lab == "my own lab"
''')
    result = inner.runpytest("-p", "no:cacheprovider", "-v", "--vrlab-topology",
                             "configs/line.yaml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_g.py::test_own PASSED*"])
    assert not (inner.path / "lab.log").exists()


def test_a_failed_tests_pcaps_and_serial_logs_are_kept_and_named(inner: pytest.Pytester
                                                                  ) -> None:
    inner.makepyfile(test_h='''
import pytest

pytestmark = pytest.mark.vrlab_topology("configs/line.yaml")


def test_passes(lab):
    with lab.capture("r1", "eth1") as pcap:
        pcap.write_bytes(b"passing")


def test_fails(lab):
    with lab.capture("r1", "eth1") as pcap:
        pcap.write_bytes(b"the evidence")
    with lab.capture("h2", "eth1") as pcap:
        pcap.write_bytes(b"more evidence")
    assert False, "no reply"
''')
    result = inner.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    text = result.stdout.str()
    section = text.split("vrlab evidence kept")[1].split("\n", 1)[1]
    kept = [Path(line) for line in section.splitlines() if line.startswith("/")]
    by_name = {path.name: path for path in kept}
    assert set(by_name) == {"r1-eth1-1.pcap", "h2-eth1-2.pcap", "h1-serial.log",
                            "r1-serial.log", "h2-serial.log"}
    assert by_name["r1-eth1-1.pcap"].read_bytes() == b"the evidence"
    assert by_name["h2-eth1-2.pcap"].read_bytes() == b"more evidence"
    assert "r1 boot line 99" in by_name["r1-serial.log"].read_text()
    # under the inner run's basetemp, one directory for the failed test
    assert {path.parent for path in kept} == {by_name["h1-serial.log"].parent}
    assert by_name["h1-serial.log"].parent.name.startswith("vrlab-failed-test_fails_line_")
    basetemp = by_name["h1-serial.log"].parents[1]
    assert basetemp.name == "basetemp"  # pytester's --basetemp for the inner run
    # the passing test's pcap went away with its lab
    assert not list(basetemp.rglob("r1-eth1-0.pcap"))
