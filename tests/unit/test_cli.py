"""The `vrlab` command line's conventions: --version, completion, exit statuses, --json on
every command that reports, aliases, help on every argument, and `exec` streaming on several
nodes (against a fake lab: no VMs)."""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrate import ssh
from orchestrate.cli import COMMANDS, build_parser, main
from orchestrate.commands import Exit
from orchestrate.commands import exec as exec_command

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
BAD = Path(__file__).resolve().parent / "bad_topologies"


@pytest.fixture(autouse=True)
def _empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VRLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "160")


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    status = main(list(argv))
    out = capsys.readouterr().out
    return status, json.loads(out)


# ------------------------------------------------------------------ --version, --help


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("vrlab ")


def test_help_documents_every_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for status in Exit:
        assert f"\n  {int(status)}  " in text, status
    assert [int(s) for s in Exit] == [0, 1, 2, 3]
    readme = (REPO / "README.md").read_text()
    assert "`vrlab` exits 0" in readme and "3 when the lab could not come up" in readme


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command parser by its full name, e.g. "image ls", aliases included."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{parser.prog.removeprefix('vrlab').strip()} {name}".strip()
                found[full] = sub
                found.update(subparsers(sub))
    return found


def test_every_argument_has_help() -> None:
    missing = []
    for name, parser in subparsers(build_parser()).items():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
                continue
            if not action.help:
                missing.append(f"{name}: {action.dest}")
    assert missing == []


@pytest.mark.parametrize(("alias", "command"), [
    (["deploy"], ["up"]), (["destroy"], ["down"]), (["inspect"], ["status"]),
    (["connect"], ["ssh"]), (["image", "list"], ["image", "ls"]),
])
def test_aliases_run_the_same_command(alias: list[str], command: list[str]) -> None:
    parsers = subparsers(build_parser())
    assert parsers[" ".join(alias)] is parsers[" ".join(command)]


def test_commands_register_as_listed() -> None:
    names = set(subparsers(build_parser()))
    assert set(COMMANDS) <= names


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_script_names_the_commands(shell: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert "vrlab" in script
    for command in ("validate", "deploy", "exec", "completion"):
        assert command in script, command
    if shell == "bash":
        assert "complete " in script


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_aliases_and_lab_names(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "vrlab.bash"
    script.write_text(capsys.readouterr().out)
    home = tmp_path / "home"
    for lab in ("alpha", "beta"):
        (home / "labs" / lab).mkdir(parents=True)

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        program = (f"source {script}; COMP_WORDS=({' '.join(repr(w) for w in words)}); "
                   f"COMP_CWORD={len(words) - 1}; COMP_LINE={line!r}; "
                   f"COMP_POINT=${{#COMP_LINE}}; _shtab_vrlab; echo ${{COMPREPLY[*]}}")
        done = subprocess.run(["bash", "-c", program], capture_output=True, text=True,
                              timeout=30, env={"VRLAB_HOME": str(home), "PATH": "/usr/bin:/bin"})
        return sorted(done.stdout.split())

    assert complete("vrlab de") == ["demo", "deploy", "destroy"]
    for command in ("down", "status", "trace", "ui"):
        assert complete(f"vrlab {command} ") == ["alpha", "beta"], command
    assert complete("vrlab exec --lab b") == ["beta"]
    assert complete("vrlab image l") == ["list", "ls"]


# ------------------------------------------------------------------ --json and exit statuses


def test_validate_json_ok(capsys: pytest.CaptureFixture[str]) -> None:
    status, doc = run_json(capsys, "validate", str(CONFIGS / "duo.yaml"), "--json")
    assert status == Exit.OK
    assert doc["valid"] is True and doc["lab"] == "duo"
    assert doc["hosts"] == ["violin", "piano"] and doc["links"] == 1
    assert len(doc["checks"]) >= 1


def test_validate_json_problems_are_placed(capsys: pytest.CaptureFixture[str]) -> None:
    status, doc = run_json(capsys, "validate", str(BAD / "bad_address.yaml"), "--json")
    assert status == Exit.BAD_INPUT == doc["exit_status"]
    first = doc["problems"][0]
    assert (first["line"], first["col"]) == (3, 58)
    assert first["path"] == "nodes.h1.interfaces[0].addresses[0]"
    assert first["text"].startswith(f"{BAD / 'bad_address.yaml'}:3:58: ")


@pytest.mark.parametrize("command", ["up", "test", "graph", "validate"])
def test_an_invalid_file_exits_2(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = BAD / "bad_address.yaml"
    assert main([command, str(path)]) == Exit.BAD_INPUT
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"{path}:3:58: ")
    # one line per problem (validate then says how many)
    assert lines[2:] == ([f"{path}: 2 problems"] if command == "validate" else [])


def test_up_that_cannot_come_up_exits_3_with_json(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrate import lab as labmod

    def up(*args: Any, **kwargs: Any) -> None:
        raise labmod.LabError("node violin did not become ready")

    monkeypatch.setattr(labmod.Lab, "up", up)
    status, doc = run_json(capsys, "up", str(CONFIGS / "duo.yaml"), "--json",
                           "--no-progress")
    assert status == Exit.NOT_UP == doc["exit_status"]
    assert doc["error"] == "node violin did not become ready"


class UpLab:
    """What `up` and `status` read of a lab that came up."""

    name = "duo"
    backend_name = "qemu"
    ssh_config = Path("/labs/duo/ssh_config")

    def __init__(self) -> None:
        self.record = types.SimpleNamespace(data={"state": "up", "accel": "tcg"})

    def status(self) -> list[Any]:
        from orchestrate.lab import NodeStatus

        return [NodeStatus("violin", "host", "running", 2222, "127.0.0.1:2222", [],
                           "/labs/duo/nodes/violin/serial.log",
                           [{"name": "vioif0", "mac": "52:54:00:aa:bb:cc", "mtu": 1500,
                             "link": "udp", "link_local": "fe80::5054:ff:feaa:bbcc"}])]


def test_up_json_is_the_status_document(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrate import lab as labmod

    monkeypatch.setattr(labmod.Lab, "up", lambda *args, **kwargs: UpLab())
    status, doc = run_json(capsys, "deploy", str(CONFIGS / "duo.yaml"), "--json",
                           "--no-progress")
    assert status == Exit.OK
    assert list(doc) == ["duo"]
    lab = doc["duo"]
    assert (lab["state"], lab["backend"], lab["accel"]) == ("up", "qemu", "tcg")
    assert lab["ssh_config"] == "/labs/duo/ssh_config"
    (node,) = lab["nodes"]
    assert (node["name"], node["state"], node["ssh_port"]) == ("violin", "running", 2222)
    assert node["interfaces"][0]["link_local"] == "fe80::5054:ff:feaa:bbcc"
    monkeypatch.setattr(labmod, "resolve_lab_name", lambda given: "duo")
    monkeypatch.setattr(labmod.Lab, "open", staticmethod(lambda name: UpLab()))
    assert run_json(capsys, "inspect", "duo", "--json") == (0, doc)


def test_test_that_cannot_come_up_exits_3(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrate import lab as labmod

    def up(*args: Any, **kwargs: Any) -> None:
        raise labmod.LabError("qemu exploded")

    monkeypatch.setattr(labmod.Lab, "up", up)
    status, doc = run_json(capsys, "test", str(CONFIGS / "duo.yaml"), "--json")
    assert status == Exit.NOT_UP
    assert doc == {"error": "qemu exploded", "exit_status": 3}


def test_status_down_and_image_ls_json_with_nothing_there(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run_json(capsys, "status", "--json") == (0, {})
    assert run_json(capsys, "down", "--json") == (0, {})
    assert run_json(capsys, "down", "--all", "--json") == (0, {})
    assert run_json(capsys, "image", "list", "--json") == (0, [])
    assert run_json(capsys, "image", "prune", "--json") == (0, {"removed": []})


def test_status_of_an_unknown_lab_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    status, doc = run_json(capsys, "status", "nosuchlab", "--json")
    assert status == Exit.BAD_INPUT == doc["exit_status"]
    assert "nosuchlab" in doc["error"]


def test_capture_wants_node_colon_interface(capsys: pytest.CaptureFixture[str]) -> None:
    status, doc = run_json(capsys, "capture", "r1", "--json")
    assert status == Exit.BAD_INPUT and "NODE:IF" in doc["error"]


# ------------------------------------------------------------------ exec


@dataclass
class Result:
    exit_status: int
    stdout: str = ""
    stderr: str = ""


Script = Callable[[str, Callable[[str, bytes], None] | None], Result]


class FakeNode:
    def __init__(self, script: Script) -> None:
        self.script = script

    def exec(self, command: str, timeout: float = 60.0,
             on_output: Callable[[str, bytes], None] | None = None) -> Result:
        return self.script(command, on_output)


class FakeLab:
    name = "fake"

    def __init__(self, scripts: dict[str, Script]) -> None:
        self.scripts = scripts
        self.closed = False

    def nodes(self) -> list[str]:
        return list(self.scripts)

    def node(self, name: str) -> FakeNode:
        return FakeNode(self.scripts[name])

    def close(self) -> None:
        self.closed = True


def echo(lines: list[str], status: int = 0, err: str = "") -> Script:
    def script(command: str, on_output: Callable[[str, bytes], None] | None) -> Result:
        if on_output is None:
            return Result(status, "".join(f"{line}\n" for line in lines), err)
        for line in lines:
            on_output("stdout", f"{line}\n".encode())
        if err:
            on_output("stderr", err.encode())
        return Result(status)
    return script


@pytest.fixture
def fake_lab(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, Script]], FakeLab]:
    from orchestrate import lab as labmod

    def install(scripts: dict[str, Script]) -> FakeLab:
        lab = FakeLab(scripts)
        monkeypatch.setattr(labmod, "resolve_lab_name", lambda given: "fake")
        monkeypatch.setattr(labmod.Lab, "open", staticmethod(lambda name: lab))
        return lab
    return install


@pytest.mark.parametrize(("argv", "nodes", "command", "lab"), [
    (["r1", "--", "ping", "-c", "3", "x"], ["r1"], ["ping", "-c", "3", "x"], None),
    (["r1,r2", "--lab", "duo", "--", "uptime"], ["r1", "r2"], ["uptime"], "duo"),
    (["--all", "--", "ip", "-br", "a"], [], ["ip", "-br", "a"], None),
    (["--all", "hostname"], [], ["hostname"], None),
    (["r1", "hostname", "-f"], ["r1"], ["hostname", "-f"], None),
])
def test_exec_nodes_and_command(argv: list[str], nodes: list[str], command: list[str],
                                lab: str | None) -> None:
    args = build_parser().parse_args(["exec", *argv])
    assert exec_command.nodes_and_command(args) == (nodes, command)
    assert args.lab == lab


def test_exec_one_node_passes_output_and_status_through(
        capfd: pytest.CaptureFixture[str], fake_lab: Callable[[dict[str, Script]], FakeLab]
        ) -> None:
    lab = fake_lab({"r1": echo(["hello"], status=3, err="oops\n"), "r2": echo(["no"])})
    assert main(["exec", "r1", "--", "sh", "-c", "echo hello; exit 3"]) == 3
    out, err = capfd.readouterr()
    assert (out, err) == ("hello\n", "oops\n")
    assert lab.closed


def test_exec_several_nodes_prefix_lines_and_exit_with_the_highest(
        capfd: pytest.CaptureFixture[str], fake_lab: Callable[[dict[str, Script]], FakeLab]
        ) -> None:
    fake_lab({"r1": echo(["a", "b"], status=0), "router2": echo(["c"], status=4),
              "h1": echo(["never"])})
    assert main(["exec", "r1,router2", "--", "hostname"]) == 4
    out, _ = capfd.readouterr()
    assert sorted(out.splitlines()) == ["r1      | a", "r1      | b", "router2 | c"]


def test_exec_all_runs_on_every_node(capfd: pytest.CaptureFixture[str],
                                     fake_lab: Callable[[dict[str, Script]], FakeLab]) -> None:
    fake_lab({"r1": echo(["x"]), "h1": echo(["y"])})
    assert main(["exec", "--all", "--", "true"]) == 0
    assert sorted(capfd.readouterr().out.splitlines()) == ["h1 | y", "r1 | x"]


def test_exec_unreachable_node_is_255(capfd: pytest.CaptureFixture[str],
                                      fake_lab: Callable[[dict[str, Script]], FakeLab]) -> None:
    def unreachable(command: str, on_output: Any) -> Result:
        raise ssh.SshError("127.0.0.1:2222: connection refused")

    fake_lab({"r1": echo(["fine"]), "r2": unreachable})
    assert main(["exec", "r1,r2", "--", "true"]) == 255
    out, err = capfd.readouterr()
    assert out == "r1 | fine\n"
    assert "r2 | vrlab exec: r2: 127.0.0.1:2222: connection refused" in err


def test_exec_bad_input(capfd: pytest.CaptureFixture[str],
                        fake_lab: Callable[[dict[str, Script]], FakeLab]) -> None:
    fake_lab({"r1": echo(["x"])})
    assert main(["exec", "r9", "--", "true"]) == Exit.BAD_INPUT
    assert "has no node r9" in capfd.readouterr().err
    assert main(["exec", "r1", "--all", "--", "true"]) == Exit.BAD_INPUT
    assert main(["exec", "r1"]) == Exit.BAD_INPUT
    assert main(["exec", "--", "true"]) == Exit.BAD_INPUT


def test_exec_json_collects(capsys: pytest.CaptureFixture[str],
                            fake_lab: Callable[[dict[str, Script]], FakeLab]) -> None:
    fake_lab({"r1": echo(["x"], status=2, err="e\n"), "r2": echo(["y"])})
    status, doc = run_json(capsys, "exec", "r1,r2", "--json", "--", "true")
    assert status == 2
    assert {name: (d["exit_status"], d["stdout"], d["stderr"]) for name, d in doc.items()} == {
        "r1": (2, "x\n", "e\n"), "r2": (0, "y\n", "")}


class SignallingBuffer(io.BytesIO):
    """A binary stream that sets `seen` once `wanted` has been written to it."""

    def __init__(self, wanted: bytes) -> None:
        super().__init__()
        self.wanted = wanted
        self.seen = threading.Event()

    def write(self, data: Any) -> int:
        written = super().write(data)
        if self.wanted in self.getvalue():
            self.seen.set()
        return written


@pytest.mark.parametrize("names", [["r1"], ["r1", "r2"]])
def test_exec_streams_each_line_before_the_command_ends(names: list[str]) -> None:
    out = SignallingBuffer(b"first\n")
    shown_while_running: list[bool] = []

    def ping(command: str, on_output: Callable[[str, bytes], None] | None) -> Result:
        assert on_output is not None
        on_output("stdout", b"fir")
        on_output("stdout", b"st\nsec")
        # The command is still running: the first line must already be out there.
        shown_while_running.append(out.seen.wait(5.0))
        on_output("stdout", b"ond")  # no newline before the end: written when it ends
        return Result(0)

    lab = FakeLab({name: ping for name in names})
    statuses = exec_command.run_on_nodes(lab, names, "ping", 10.0, stdout=out,
                                         stderr=io.BytesIO())
    assert statuses == {name: 0 for name in names}
    assert shown_while_running == [True] * len(names)
    if len(names) == 1:
        assert out.getvalue() == b"first\nsecond"
    else:
        assert sorted(out.getvalue().splitlines()) == [
            b"r1 | first", b"r1 | second", b"r2 | first", b"r2 | second"]


class FakeChannel:
    """A paramiko channel whose command ends only once its first output was handed on."""

    def __init__(self, delivered: list[tuple[str, bytes]]) -> None:
        self.delivered = delivered
        self.out = [b"64 bytes from x: icmp_seq=1\n", b"64 bytes from x: icmp_seq=2\n"]
        self.err = [b"warning\n"]
        self.closed = False
        self.eof_received = True

    def settimeout(self, timeout: float) -> None:
        pass

    def exec_command(self, command: str) -> None:
        pass

    def shutdown_write(self) -> None:
        pass

    def recv_ready(self) -> bool:
        return bool(self.out)

    def recv(self, size: int) -> bytes:
        return self.out.pop(0)

    def recv_stderr_ready(self) -> bool:
        return bool(self.err)

    def recv_stderr(self, size: int) -> bytes:
        return self.err.pop(0)

    def exit_status_ready(self) -> bool:
        return bool(self.delivered)

    def recv_exit_status(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True


def test_ssh_run_hands_output_on_as_it_arrives() -> None:
    delivered: list[tuple[str, bytes]] = []
    channel = FakeChannel(delivered)

    class Transport:
        def open_session(self, timeout: float) -> FakeChannel:
            return channel

    class Client:
        def get_transport(self) -> Transport:
            return Transport()

    result = ssh.run(Client(), "ping x", timeout=2.0,  # type: ignore[arg-type]
                     on_output=lambda stream, data: delivered.append((stream, data)))
    assert result == ssh.ExecResult(0, "", "")
    assert delivered == [("stdout", b"64 bytes from x: icmp_seq=1\n"),
                         ("stdout", b"64 bytes from x: icmp_seq=2\n"),
                         ("stderr", b"warning\n")]
    # Without a sink the same output is collected into the result.
    collected = FakeChannel([("x", b"")])
    Transport.open_session = lambda self, timeout: collected  # type: ignore[method-assign]
    assert ssh.run(Client(), "ping x", timeout=2.0) == ssh.ExecResult(  # type: ignore[arg-type]
        0, "64 bytes from x: icmp_seq=1\n64 bytes from x: icmp_seq=2\n", "warning\n")


# ------------------------------------------------------------------ the live `up` table


def test_live_table_ends_with_a_newline_off_a_terminal(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    from orchestrate.readiness import ProgressDisplay as _ProgressDisplay

    with _ProgressDisplay(["r1"], {"r1": "ready"}, {"r1": 0.0}, 0.0, enabled=True):
        pass
    err = capsys.readouterr().err
    assert "r1" in err and err.endswith("\n") and not err.endswith("\n\n")
