"""Lab.up / down / status through the real QEMU backend code with a stand-in `qemu` process.

The stand-in (a Python script put in place with VRLAB_QEMU) takes QEMU's command line, writes
a kernel banner into the serial log named by `-chardev ...,logfile=`, and sleeps, so up, the
journal, readiness, failures and down run for real without booting anything. SSH readiness is
faked: these tests are about the lifecycle; tests/e2e covers real VMs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrate import lab as labmod
from orchestrate import ssh
from orchestrate.backends.qemu import pids_with_marker
from orchestrate.lab import Lab, LabError, link_local_from_mac
from orchestrate.topology import load_topology

FAKE_QEMU = textwrap.dedent("""\
    #!/usr/bin/env python3
    import sys, time, os
    args = sys.argv[1:]
    mode = os.environ.get("FAKE_QEMU_MODE", "boot")
    chardev = args[args.index("-chardev") + 1]
    log = [p.split("=", 1)[1] for p in chardev.split(",") if p.startswith("logfile=")][0]
    pidfile = args[args.index("-pidfile") + 1]
    open(pidfile, "w").write(str(os.getpid()))
    if mode == "die":
        sys.exit(1)
    if mode == "boot":
        with open(log, "a") as f:
            f.write("[    0.000000] Linux version 6.1.0 (fake)\\n")
    time.sleep(600)
    """)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    home = tmp_path / "home"
    monkeypatch.setenv("VRLAB_HOME", str(home))
    monkeypatch.setenv("VRLAB_ACCEL", "tcg")
    monkeypatch.setenv("VRLAB_PORT_RANGE", "45000-45999")
    fake = tmp_path / "fake-qemu"
    fake.write_text(FAKE_QEMU)
    fake.chmod(0o755)
    monkeypatch.setenv("VRLAB_QEMU", str(fake))
    disk = tmp_path / "base.raw"
    disk.write_bytes(b"\0" * 1024 * 1024)
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel")
    image = SimpleNamespace(kernel=kernel, initrd=None, disk=disk, cmdline="console=ttyS0",
                            digest="fake")

    def fake_config(topology: Any, node: Any, spec: Any, client: Any, host_key: Any) -> None:
        spec.config_disk.write_bytes(b"config")

    monkeypatch.setattr(labmod, "write_config_disk", fake_config)
    monkeypatch.setattr(ssh, "ssh_answers", lambda *a, **k: True)
    monkeypatch.setattr(labmod.NodeHandle, "exec",
                        lambda self, cmd, timeout=60.0: ssh.ExecResult(0, "", ""))
    yield SimpleNamespace(home=home, image=image, tmp=tmp_path)
    # Whatever a test did, leave no stand-in process behind.
    for pid in pids_with_marker(str(home)):
        os.kill(pid, signal.SIGKILL)


def topo_file(tmp: Path, text: str) -> Path:
    path = tmp / "topo.yaml"
    path.write_text(textwrap.dedent(text))
    return path


DUO = """\
    name: duo
    nodes:
      violin: {role: host, interfaces: [{name: vioif0}]}
      piano: {role: host, interfaces: [{name: vioif0}]}
    links:
      - [violin:vioif0, piano:vioif0]
    """


def up(env: SimpleNamespace, text: str = DUO, **kw: Any) -> Lab:
    topology = load_topology(topo_file(env.tmp, text))
    return Lab.up(topology, image=env.image, progress=False, **{"timeout": 30.0, **kw})


def live_pids(env: SimpleNamespace) -> list[int]:
    return pids_with_marker(str(env.home))


def test_up_records_everything_and_down_removes_it(env: SimpleNamespace) -> None:
    lab = up(env)
    record = json.loads((lab.dir / "record.json").read_text())
    kinds = {obj["kind"] for obj in record["objects"]}
    assert {"process", "overlay", "config_disk", "port", "socket", "directory"} <= kinds
    assert record["state"] == "up"
    assert all(obj["state"] == "created" for obj in record["objects"]
               if obj["kind"] in ("process", "overlay", "config_disk"))
    assert len(live_pids(env)) == 2
    overlay = Path(lab.spec("violin").overlay)
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(overlay)],
                                     capture_output=True, check=True, text=True).stdout)
    assert info["format"] == "qcow2" and info["backing-filename-format"] == "raw"
    assert [s.state for s in lab.status()] == ["running", "running"]
    assert lab.down() == []
    assert live_pids(env) == []
    assert not lab.dir.exists()
    with pytest.raises(LabError):
        Lab.open("duo")


def test_down_is_idempotent_and_works_after_kill_9(env: SimpleNamespace) -> None:
    lab = up(env)
    victim = lab.record.find("process", "piano")
    assert victim is not None
    os.kill(victim["pid"], signal.SIGKILL)
    reopened = Lab.open("duo")
    state = "running"
    for _ in range(100):  # SIGKILL is asynchronous: give the kernel a moment
        state = {s.name: s.state for s in reopened.status()}["piano"]
        if state == "stopped":
            break
        time.sleep(0.05)
    assert state == "stopped"
    assert reopened.down() == []
    assert live_pids(env) == []
    assert labmod.teardown(reopened.record) == []  # again: nothing to do, no error
    assert not lab.dir.exists()


def test_timeout_names_node_and_stage_and_cleans_up(env: SimpleNamespace,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "silent")  # never prints a kernel banner
    with pytest.raises(LabError) as info:
        up(env, timeout=2.0)
    message = str(info.value)
    assert "did not reach stage 'booted'" in message
    assert "serial.log" in message
    assert "piano" in message or "violin" in message
    assert live_pids(env) == []
    assert not (env.home / "labs" / "duo").exists()


def test_vm_exiting_during_boot_is_reported(env: SimpleNamespace,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "die")
    with pytest.raises(LabError, match="exited"):
        up(env)
    assert live_pids(env) == []
    assert not (env.home / "labs" / "duo").exists()


def test_two_labs_side_by_side_do_not_collide(env: SimpleNamespace) -> None:
    first = up(env)
    second = up(env, name="duo2")
    try:
        ports_a = first.record.reserved_ports()
        ports_b = second.record.reserved_ports()
        assert ports_a and ports_b and not ports_a & ports_b
        macs_a = {nic.mac for n in first.nodes() for nic in first.spec(n).nics}
        macs_b = {nic.mac for n in second.nodes() for nic in second.spec(n).nics}
        assert not macs_a & macs_b
        assert len(live_pids(env)) == 4
    finally:
        assert first.down() == []
        assert second.down() == []
    assert live_pids(env) == []


def test_existing_lab_is_not_overwritten(env: SimpleNamespace) -> None:
    lab = up(env)
    try:
        with pytest.raises(LabError, match="already exists"):
            up(env)
        assert len(live_pids(env)) == 2
    finally:
        lab.down()


def test_down_after_the_orchestrator_was_killed_during_up(env: SimpleNamespace,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          ) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "silent")  # up waits forever for the banner
    script = env.tmp / "orchestrator.py"
    script.write_text(textwrap.dedent(f"""\
        import sys
        from pathlib import Path
        from types import SimpleNamespace
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from orchestrate import lab as labmod
        from orchestrate.topology import load_topology
        labmod.write_config_disk = lambda t, n, spec, c, h: spec.config_disk.write_bytes(b"x")
        image = SimpleNamespace(kernel=Path({str(env.image.kernel)!r}), initrd=None,
                                disk=Path({str(env.image.disk)!r}), cmdline="", digest="")
        topology = load_topology(Path({str(topo_file(env.tmp, DUO))!r}))
        labmod.Lab.up(topology, image=image, progress=False, timeout=600)
        """))
    proc = subprocess.Popen([sys.executable, str(script)], env=os.environ.copy())
    try:
        deadline = time.monotonic() + 30
        while len(live_pids(env)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(live_pids(env)) == 2
        time.sleep(0.5)  # kill it while it waits for readiness, with the VMs journaled
    finally:
        proc.kill()
        proc.wait()
    assert len(live_pids(env)) == 2  # the VMs outlive the killed orchestrator...
    assert Lab.open("duo").down() == []  # ...and down finds them from the journal alone
    assert live_pids(env) == []
    assert not (env.home / "labs" / "duo").exists()


def test_link_local_from_mac_is_modified_eui64() -> None:
    assert str(link_local_from_mac("52:54:00:12:34:56")) == "fe80::5054:ff:fe12:3456"
    assert str(link_local_from_mac("00:00:5e:00:53:01")) == "fe80::200:5eff:fe00:5301"
