"""Lab.up / down / status through the real QEMU backend code with a stand-in `qemu` process.

The stand-in (a Python script put in place with VRLAB_QEMU) takes QEMU's command line, writes
a kernel banner into the serial log named by `-chardev ...,logfile=`, and sleeps, so up, the
journal, readiness, failures and down run for real without booting anything. SSH readiness is
faked: these tests are about the lifecycle; tests/e2e covers real VMs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
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
from orchestrate import memory, ssh
from orchestrate.backends.qemu import pids_with_marker, process_is_zombie
from orchestrate.cli import main as cli_main
from orchestrate.images import ImageInfo
from orchestrate.lab import (
    Lab,
    LabError,
    LabInputError,
    LabNameError,
    link_local_from_mac,
    resolve_lab_name,
    run_dir_for,
)
from orchestrate.record import Record
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
    monkeypatch.setenv("VRLAB_BOOT", "cold")  # the stand-in QEMU cannot save or restore a VM
    monkeypatch.setenv("VRLAB_PORT_RANGE", "45000-45999")
    fake = tmp_path / "fake-qemu"
    fake.write_text(FAKE_QEMU)
    fake.chmod(0o755)
    monkeypatch.setenv("VRLAB_QEMU", str(fake))
    # KSM is machine-wide: the tests' labs hold a stand-in, never this machine's
    ksm = tmp_path / "ksm"
    ksm.mkdir()
    (ksm / "run").write_text("0\n")
    (ksm / "pages_to_scan").write_text("100\n")
    monkeypatch.setattr(memory, "KSM_DIR", ksm)
    monkeypatch.setattr(memory, "KSM_STATE", tmp_path / "run" / "ksm.json")
    disk = tmp_path / "base.raw"
    disk.write_bytes(b"\0" * 1024 * 1024)
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel")
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"initrd")
    image = ImageInfo(digest="fake", directory=tmp_path, kernel=kernel, initrd=initrd,
                      disk=disk, cmdline="console=ttyS0")

    def fake_config(topology: Any, node: Any, spec: Any, client: Any, host_key: Any) -> None:
        spec.config_disk.write_bytes(b"config")

    monkeypatch.setattr(labmod, "write_config_disk", fake_config)
    monkeypatch.setattr(ssh, "ssh_answers", lambda *a, **k: True)
    monkeypatch.setattr(labmod.NodeHandle, "exec",
                        lambda self, cmd, timeout=60.0: ssh.ExecResult(0, "", ""))
    yield SimpleNamespace(home=home, image=image, tmp=tmp_path, ksm=ksm)
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
    assert {"process", "overlay", "config_disk", "port", "socket", "directory", "ksm"} <= kinds
    assert record["state"] == "up" and record["ksm"] == "on"
    assert (env.ksm / "run").read_text() == "1\n"  # turned on for the lab...
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
    # ...and put back as it was found by the down of the last lab holding it
    assert [(env.ksm / k).read_text() for k in ("run", "pages_to_scan")] == ["0\n", "100\n"]
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
        from orchestrate import lab as labmod, memory
        from orchestrate.topology import load_topology
        # the fixture's KSM stand-in: this process must not hold the machine's KSM either
        memory.KSM_DIR = Path({str(env.ksm)!r})
        memory.KSM_STATE = Path({str(env.tmp / "run" / "ksm.json")!r})
        labmod.write_config_disk = lambda t, n, spec, c, h: spec.config_disk.write_bytes(b"x")
        from orchestrate.images import ImageInfo
        image = ImageInfo(digest="", directory=Path("/"), kernel=Path({str(env.image.kernel)!r}),
                          initrd=Path({str(env.image.initrd)!r}),
                          disk=Path({str(env.image.disk)!r}), cmdline="")
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
    assert (env.ksm / "run").read_text() == "1\n"  # the killed up held KSM (the stand-in)
    assert Lab.open("duo").down() == []  # ...and down finds them from the journal alone
    assert live_pids(env) == []
    assert not (env.home / "labs" / "duo").exists()
    assert (env.ksm / "run").read_text() == "0\n"  # and let KSM go as it found it
    assert not (env.tmp / "run" / "ksm.json").exists()


def test_link_local_from_mac_is_modified_eui64() -> None:
    assert str(link_local_from_mac("52:54:00:12:34:56")) == "fe80::5054:ff:fe12:3456"
    assert str(link_local_from_mac("00:00:5e:00:53:01")) == "fe80::200:5eff:fe00:5301"


# -- names and paths (orchestrate.names): nothing outside $VRLAB_HOME is ever touched ---------


def victim_dir(env: SimpleNamespace) -> Path:
    """A directory next to $VRLAB_HOME that `../../victim` from labs/ would reach."""
    victim = env.tmp / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    assert (env.home / "labs" / ".." / ".." / "victim").resolve() == victim.resolve()
    return victim


@pytest.mark.parametrize("name", ["../../victim", "../victim", "..", ".", "a/b", "/tmp/x",
                                  "", "x" * 64, "-x", "a b", "a\x00b"])
def test_up_refuses_a_bad_name_and_touches_nothing(env: SimpleNamespace, name: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    victim = victim_dir(env)
    # The old code built labs/<name> unchecked and, when the VM died, tore down (rmtree'd) it.
    monkeypatch.setenv("FAKE_QEMU_MODE", "die")
    with pytest.raises(LabNameError, match="name"):
        up(env, name=name)
    assert (victim / "precious").read_text() == "keep me"
    assert live_pids(env) == []
    assert not (env.home / "labs").exists() or list((env.home / "labs").iterdir()) == []


def test_open_and_resolve_refuse_bad_names(env: SimpleNamespace) -> None:
    victim = victim_dir(env)
    Record.create(victim / "record.json", "victim")  # a journal the traversal would find
    for name in ("../../victim", "..", "x/../../../victim"):
        with pytest.raises(LabNameError):
            Lab.open(name)
        with pytest.raises(LabNameError):
            resolve_lab_name(name)
    assert (victim / "precious").exists()


def test_cli_down_refuses_a_traversal_with_exit_2(env: SimpleNamespace,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    victim = victim_dir(env)
    Record.create(victim / "record.json", "victim")
    assert cli_main(["down", "../../victim"]) == 2
    assert "not a valid name" in capsys.readouterr().err
    assert (victim / "precious").exists() and (victim / "record.json").exists()


def test_a_symlinked_lab_directory_is_not_followed(env: SimpleNamespace) -> None:
    victim = victim_dir(env)
    (env.home / "labs").mkdir(parents=True)
    (env.home / "labs" / "duo").symlink_to(victim)
    with pytest.raises(LabNameError, match="outside"):
        up(env)
    with pytest.raises(LabNameError, match="outside"):
        Lab.open("duo")
    assert (victim / "precious").exists()


def test_a_directory_vrlab_did_not_make_is_not_adopted(env: SimpleNamespace) -> None:
    stray = env.home / "labs" / "duo"
    stray.mkdir(parents=True)
    (stray / "notes").write_text("mine")
    with pytest.raises(LabError, match="holds no lab journal"):
        up(env)
    assert (stray / "notes").read_text() == "mine"


def test_teardown_removes_journal_paths_only_inside_the_lab(env: SimpleNamespace) -> None:
    victim = victim_dir(env)
    lab = up(env)
    # A hand-edited (or hostile) journal naming files and directories elsewhere.
    lab.record.intend("file", "outside", path=str(victim / "precious"))
    lab.record.intend("directory", "outside-dir", path=str(victim))
    lab.record.intend("file", "climb", path=str(lab.dir / ".." / ".." / ".." / "victim"
                                                 / "precious"))
    problems = lab.down()
    assert len(problems) == 3 and all("outside the lab's directories" in p for p in problems)
    assert (victim / "precious").read_text() == "keep me"
    assert live_pids(env) == []  # everything else still went
    assert lab.dir.exists()  # kept with its journal, so `vrlab down` can retry after a fix


def test_lab_files_are_private(env: SimpleNamespace) -> None:
    lab = up(env)
    try:
        assert stat.S_IMODE(lab.dir.stat().st_mode) == 0o700
        spec = lab.spec("violin")
        assert stat.S_IMODE(spec.node_dir.stat().st_mode) == 0o700
        for path in (spec.overlay, spec.config_disk, lab.client_key):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        lab.down()


@pytest.fixture
def long_home(env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A $VRLAB_HOME so deep that the lab's sockets fall back to /tmp/vrlab-<hash>."""
    home = env.tmp / ("h" * 60) / ("o" * 40)
    monkeypatch.setenv("VRLAB_HOME", str(home))
    run_dir = run_dir_for(home.resolve() / "labs" / "duo")
    assert str(run_dir).startswith("/tmp/vrlab-")
    shutil.rmtree(run_dir, ignore_errors=True)
    return run_dir


@pytest.mark.parametrize("plant", ["other-owner", "open-mode", "symlink"])
def test_a_planted_socket_directory_is_refused(env: SimpleNamespace, long_home: Path,
                                               plant: str) -> None:
    if plant == "symlink":
        long_home.symlink_to(env.tmp)
    else:
        long_home.mkdir(mode=0o700)
        if plant == "other-owner":
            os.chown(long_home, 65534, 65534)
        else:
            long_home.chmod(0o777)
    try:
        with pytest.raises(LabError, match="remove it"):
            up(env)
        assert live_pids(env) == []
        assert long_home.is_symlink() or long_home.is_dir()  # theirs: left alone
    finally:
        if long_home.is_symlink():
            long_home.unlink()
        else:
            shutil.rmtree(long_home, ignore_errors=True)


def test_the_socket_directory_fallback_is_private(env: SimpleNamespace, long_home: Path) -> None:
    lab = up(env)
    info = os.lstat(long_home)
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()
    assert lab.down() == []
    assert not long_home.exists()


def is_zombie_or_running(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def test_down_reaps_a_qemu_that_already_exited(env: SimpleNamespace) -> None:
    lab = up(env)  # this process is the parent of both QEMUs, as under the pytest plugin
    pid = int(lab.record.find("process", "violin")["pid"])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not process_is_zombie(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_is_zombie(pid)  # dead, not yet waited for
    assert lab.down() == []
    assert not is_zombie_or_running(pid)  # reaped: no zombie left behind
    assert live_pids(env) == []


def test_the_pytest_plugin_pool_reaps_its_qemus(env: SimpleNamespace) -> None:
    from orchestrate.pytest_plugin import LabPool

    pool = LabPool(lambda topology: Lab.up(topology, image=env.image, progress=False,
                                           timeout=30.0))
    session = pool.get(topo_file(env.tmp, DUO))
    pids = [int(session.raw.record.find("process", n)["pid"]) for n in ("violin", "piano")]
    os.kill(pids[0], signal.SIGKILL)  # one VM crashed during the test; the other is running
    deadline = time.monotonic() + 10
    while not process_is_zombie(pids[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.close() == []
    assert [pid for pid in pids if is_zombie_or_running(pid)] == []


BIG_DUO = DUO.replace("name: duo", "name: duo\n    defaults: {memory: 4G}")


@pytest.fixture
def small_machine(env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with 6 GiB available (MemAvailable), whatever this one has."""
    meminfo = env.tmp / "meminfo"
    meminfo.write_text("MemTotal:       25165824 kB\nMemFree:         1000000 kB\n"
                       "MemAvailable:    6291456 kB\n")
    monkeypatch.setattr(labmod, "MEMINFO", meminfo)


def test_a_lab_bigger_than_the_machine_is_refused(env: SimpleNamespace, small_machine: None,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(LabInputError, match=r"needs 8192 MiB of guest memory \(2 nodes\), "
                                            r"more than the 6144 MiB .* --force"):
        up(env, BIG_DUO)
    assert live_pids(env) == [] and not (env.home / "labs" / "duo").exists()
    assert cli_main(["up", str(topo_file(env.tmp, BIG_DUO)), "--no-progress"]) == 2
    assert "more than the 6144 MiB this machine has available" in capsys.readouterr().err
    assert not (env.home / "labs" / "duo").exists()


def test_force_starts_a_lab_bigger_than_the_machine(env: SimpleNamespace,
                                                    small_machine: None) -> None:
    lab = up(env, BIG_DUO, force=True)
    assert [s.state for s in lab.status()] == ["running", "running"]
    assert lab.down() == []
