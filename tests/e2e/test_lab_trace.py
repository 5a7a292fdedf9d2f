"""`vrlab trace` and `vrlab ui` on configs/line.yaml (h1 - r1 - h2), one lab for the module.

- a forwarded ping: every hop in order (h1, wire, r1, wire, h2 and back), r1 forwards it on
  the fast path with every stage while tracing (ip.fastforward moved), per-hop latency and the
  end-to-end time;
- a TTL expiry: Time Exceeded named at r1, stage ttl, the counters that moved;
- the JSON of the CLI lists every hop with node names and stage names; bad input says what
  was missing; a probe with nowhere to go says where it was last seen;
- `vrlab capture -w -` streams a pcap and `--follow` prints decoded packets;
- `vrlab ui` in a real headless Chromium: every node drawn, a link counter rises while a ping
  runs, a trace started from the page lights the hops, a wrong or absent token is refused; a
  screenshot is saved under the test's tmp_path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CONFIGS, boot

from orchestrate.lab import Lab
from orchestrate.topology import load_topology
from orchestrate.trace.live import TraceRequest, trace_lab

from _helpers_e2e import neighbors

REPO = Path(__file__).resolve().parents[2]
LAB = "e2e-trace-line"
H1, H2 = "198.51.100.2", "198.51.100.66"
NOBODY = "198.51.100.70"
"""On h2's link, but no node has it."""


@pytest.fixture(scope="module")
def line(vm_image: Any) -> Iterator[Lab]:
    lab = boot(load_topology(CONFIGS / "line.yaml"), LAB, vm_image)
    try:
        yield lab
    finally:
        lab.down()


def vrlab(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrate", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=timeout, check=False,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))


def keep_neighbors_fresh(lab: Lab, seconds: int = 40) -> None:
    """Background pings h1 -> h2 (another ICMP id, so not part of the journey): r1's
    neighbors stay REACHABLE, so the traced probe meets the fast path as real traffic does
    (a STALE neighbor sends one packet through the slow path, RFC 4861 §7.3.3)."""
    lab.node("h1").exec(f"ping -q -c {seconds * 4} -i 0.25 {H2} >/dev/null 2>&1 &", timeout=30)
    for _ in range(60):  # bounded: STALE -> DELAY -> PROBE -> REACHABLE takes ~5 s
        states = {e["address"]: str(e["state"]).upper() for e in neighbors(lab, "r1").values()}
        if states.get(H1) == states.get(H2) == "REACHABLE":
            return
        time.sleep(0.5)
    raise AssertionError(f"r1's neighbors never became REACHABLE: {states}")


def counter(lab: Lab, key: str) -> int:
    out = lab.node("r1").exec("routerctl show stats --json", timeout=30).stdout
    return int(json.loads(out)["counters"].get(key, 0))


def test_forwarded_ping_is_fast_pathed_hop_by_hop(line: Lab) -> None:
    keep_neighbors_fresh(line)
    before = counter(line, "ip.fastforward")
    journey, report = trace_lab(line, TraceRequest(LAB, "h1", "h2"))
    assert report.get("answer") == "reply", report
    assert journey.outcome == "reply", journey.explanation
    steps = [(h.kind, h.node, h.leg) for h in journey.hops]
    assert steps == [
        ("host", "h1", "probe"), ("wire", "h1:eth1 -- r1:r1-h1", "probe"),
        ("router", "r1", "probe"), ("wire", "r1:r1-h2 -- h2:eth1", "probe"),
        ("host", "h2", "probe"), ("wire", "r1:r1-h2 -- h2:eth1", "reply"),
        ("router", "r1", "reply"), ("wire", "h1:eth1 -- r1:r1-h1", "reply"),
        ("host", "h1", "reply"),
    ], steps
    for hop in journey.router_hops():
        assert hop.verdict == "forwarded" and hop.path == "fast", hop
        assert [s.name for s in hop.stages] == ["rx", "verify", "fib", "neighbor", "ttl", "tx"]
        assert hop.counters == ["ip.fastforward"]
    r1 = journey.router_hops()[0]
    assert (r1.interface_in, r1.interface_out) == ("r1-h1", "r1-h2")
    assert "198.51.100.64/26" in next(s.detail for s in r1.stages if s.name == "fib")
    assert counter(line, "ip.fastforward") > before  # watching did not detach the fast path
    times = [h.at_ms for h in journey.hops if h.at_ms is not None]
    assert times == sorted(times) and journey.total_ms is not None and journey.total_ms > 0
    assert journey.total_ms == journey.hops[-1].at_ms


def test_ttl_expiry_is_named_at_r1(line: Lab) -> None:
    journey, _ = trace_lab(line, TraceRequest(LAB, "h1", "h2", ttl=1))
    assert journey.outcome == "error"
    (r1,) = journey.router_hops()
    assert (r1.node, r1.verdict, r1.failing_stage) == ("r1", "icmp-error", "ttl")
    assert r1.counters == ["ip.ttlexceeded", "icmp.outhist.11"]
    assert r1.path == "slow (ttl)"  # the fast path punts an expiring TTL, as it should
    error = [h for h in journey.hops if h.kind == "wire" and h.leg == "error"]
    assert len(error) == 1 and error[0].sender == "r1:r1-h1" and error[0].receiver == "h1:eth1"
    assert "time exceeded" in error[0].what
    assert journey.explanation.startswith("r1 sent an ICMP error (time exceeded) at stage ttl")


def test_watch_follows_the_next_matching_packet(line: Lab) -> None:
    """--watch sends nothing: it follows the first packet matching the filter that a
    capture sees (here h1's own `ping -t 1` to an address on h2's link that nobody has, so
    the background pings of an earlier test never match; sent until the watch has one)."""
    found: dict[str, Any] = {}

    def watch() -> None:
        try:
            found["journey"] = trace_lab(line, TraceRequest(
                LAB, None, None, watch=f"icmp and src {H1} and dst {NOBODY}", timeout=90))[0]
        except Exception as exc:  # reported below
            found["error"] = exc

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for _ in range(40):  # bounded: one ping every ~2 s until the watch has its packet
        if not watcher.is_alive():
            break
        line.node("h1").exec(f"ping -n -c 1 -W 1 -t 1 {NOBODY}", timeout=30)
        time.sleep(1)
    watcher.join(120)
    assert "error" not in found, found.get("error")
    journey = found["journey"]
    assert (journey.flow.src, journey.flow.dst) == (H1, NOBODY)
    assert journey.outcome == "error"
    assert journey.router_hops()[0].failing_stage == "ttl"


def test_cli_json_svg_and_ipv6(line: Lab, tmp_path: Path) -> None:
    svg = tmp_path / "trace.svg"
    done = vrlab("trace", LAB, "--from", "h1", "--to", "h2", "--family", "6", "--json",
                 "-o", str(svg))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["flow"]["family"] == 6 and data["outcome"] == "reply"
    nodes = [h["node"] for h in data["hops"]]
    assert nodes[0] == "h1" and nodes[-1] == "h1" and "h2" in nodes and "r1" in nodes
    for hop in data["hops"]:
        assert hop["node"] and hop["kind"] in ("host", "wire", "router")
        if hop["kind"] == "router":
            names = [s["name"] for s in hop["stages"]]
            assert names[0] == "rx" and "fib" in names, hop
            assert "tx" in names or "queue" in names, hop  # sent, or queued on ND first
    assert svg.read_text().startswith("<svg") and ">r1<" in svg.read_text()


def test_bad_input_and_a_lost_probe(line: Lab) -> None:
    done = vrlab("trace", LAB, "--from", "h9", "--to", "h2")
    assert done.returncode == 2 and "has no node 'h9'" in done.stderr
    done = vrlab("trace", LAB, "--from", "r1", "--to", "h2")
    assert done.returncode == 2 and "r1 is a router" in done.stderr
    done = vrlab("trace", "no-such-lab", "--from", "h1", "--to", "h2")
    assert done.returncode == 2 and "no-such-lab" in done.stderr
    # Nobody has 198.51.100.70 on h2's link: r1 queues the probe on an unresolved neighbor
    # and the trace, bounded by --timeout, says the probe was last seen at r1.
    done = vrlab("trace", LAB, "--from", "h1", "--to", NOBODY, "--timeout", "1")
    assert done.returncode == 1, done.stderr
    assert "last seen r1" in done.stderr
    assert "queued" in done.stdout and "arp.queued" in done.stdout


def _wait_for_line(proc: subprocess.Popen[Any], word: bytes, timeout: float = 60) -> bytes:
    """The first stderr line of `proc` containing `word` (bounded)."""
    import select

    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            line = proc.stderr.readline()
            seen += line
            if word in line or not line:
                return seen
    raise AssertionError(f"no {word!r} from {proc.args} within {timeout} s: {seen!r}")


def test_capture_streams_pcap_and_follows(line: Lab, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    common = ["-c", "8", "--duration", "120"]  # stop after 8 packets, bounded anyway
    stream = subprocess.Popen(
        [sys.executable, "-m", "orchestrate", "capture", "r1:r1-h2", "--lab", LAB, "-w", "-",
         *common], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    follow = subprocess.Popen(
        [sys.executable, "-m", "orchestrate", "capture", "h2:eth1", "--lab", LAB, "--follow",
         *common, "-w", str(tmp_path / "h2.pcap")], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert b"capturing r1:r1-h2 into stdout" in _wait_for_line(stream, b"capturing")
    _wait_for_line(follow, b"capturing")
    line.node("h1").exec(f"ping -c 6 -i 0.3 {H2}", timeout=60)
    out, err = stream.communicate(timeout=120)
    text, err2 = follow.communicate(timeout=120)
    assert stream.returncode == 0, err
    assert out[:4] == b"\xd4\xc3\xb2\xa1"  # a pcap, on stdout
    pcap = tmp_path / "stream.pcap"
    pcap.write_bytes(out)
    from orchestrate.packets import read_pcap

    frames = [r.frame for r in read_pcap(pcap)]
    assert len(frames) >= 8
    # 12 echo frames cross the link; besides them only ARP (r1 refreshing a neighbor)
    assert sum(1 for f in frames if f[12:14] == b"\x08\x00") >= 4
    assert follow.returncode == 0, err2
    assert text.decode().count(f"IPv4 {H1} > {H2}: ICMP echo request") >= 2, text


# ------------------------------------------------------------------------------ vrlab ui


def _chromium() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,900"):
        options.add_argument(flag)
    return options, Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")


@pytest.mark.skipif(shutil.which("chromium") is None or shutil.which("chromedriver") is None,
                    reason="needs chromium and chromium-driver")
def test_ui_in_headless_chromium(line: Lab, tmp_path: Path) -> None:
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url_file = tmp_path / "url"
    server = subprocess.Popen(
        [sys.executable, "-m", "orchestrate", "ui", LAB, "--url-file", str(url_file),
         "--interval", "1"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(REPO)))
    options, service = _chromium()
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium'}")
    driver = None
    try:
        for _ in range(100):  # bounded: the server writes its URL once it listens
            if url_file.exists() and url_file.read_text().strip():
                break
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            time.sleep(0.2)
        url = url_file.read_text().strip()
        assert url.startswith("http://127.0.0.1:") and "?token=" in url
        base, token = url.split("?token=")
        driver = webdriver.Chrome(options=options, service=service)
        driver.set_page_load_timeout(60)

        # a wrong or absent token is refused
        for bad in (base, base + "?token=" + "x" * len(token), base + "api/lab"):
            driver.get(bad)
            assert "403" in driver.find_element(By.TAG_NAME, "body").text, bad

        driver.get(url)
        wait = WebDriverWait(driver, 90)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        drawn = {g.get_attribute("data-node") for g in
                 driver.find_elements(By.CSS_SELECTOR, "#nodes [data-node]")}
        assert drawn == {"h1", "r1", "h2"}
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-node=r1]")
                   .get_attribute("data-state") == "running")

        def packets() -> int:
            link = driver.find_element(By.CSS_SELECTOR, '[data-link="0"]')
            return int(link.get_attribute("data-packets") or 0)

        wait.until(lambda d: packets() > 0)  # the first counter reading arrived
        start = packets()
        pinger = threading.Thread(target=lambda: line.node("h1").exec(
            f"ping -q -c 40 -i 0.2 {H2}", timeout=60), daemon=True)
        pinger.start()
        wait.until(lambda d: packets() >= start + 10)
        pinger.join(60)

        Select(driver.find_element(By.ID, "trace-from")).select_by_value("h1")
        Select(driver.find_element(By.ID, "trace-to")).select_by_value("h2")
        driver.find_element(By.ID, "trace-run").click()
        WebDriverWait(driver, 180).until(
            lambda d: d.find_element(By.ID, "trace-result").get_attribute("data-outcome"))
        result = driver.find_element(By.ID, "trace-result")
        assert result.get_attribute("data-outcome") == "reply", result.text
        lit_nodes = {g.get_attribute("data-node") for g in
                     driver.find_elements(By.CSS_SELECTOR, "#nodes .lit")}
        lit_links = {g.get_attribute("data-link") for g in
                     driver.find_elements(By.CSS_SELECTOR, "#links .lit")}
        assert lit_nodes == {"h1", "r1", "h2"} and lit_links == {"0", "1"}
        assert "router r1 r1-h1 -> r1-h2: forwarded" in result.text

        driver.find_element(By.CSS_SELECTOR, "[data-node=r1] rect").click()
        wait.until(lambda d: d.find_element(By.ID, "node-detail").get_attribute("data-loaded")
                   == "r1")
        driver.save_screenshot(str(tmp_path / "vrlab-ui.png"))
        detail = driver.find_element(By.ID, "node-detail").text
        assert "198.51.100.64/26" in detail and "REACHABLE" in detail.upper(), detail
        assert (tmp_path / "vrlab-ui.png").stat().st_size > 10_000
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
