"""The daemon (gocaas.daemon) through the real `gocaas` entry point: the first command starts it, later ones
run in its forked children with the client's streams, directory, environment and exit code; Ctrl-C and a
dead client stop the command; bad settings and unsafe runtime directories are refused; idle daemons and
`gocaas daemon stop` leave nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gocaas.daemon.identity import (
    BadMode,
    DaemonPaths,
    PidFile,
    code_digest,
    daemon_wanted,
    fingerprint,
    idle_seconds,
    package_state,
)
from gocaas.settings import Settings
from tests.conftest import ROOT, settings_env

GOTEST = ROOT / "tests" / "fixtures" / "gotest"


class Daemonised:
    """Runs `python -m gocaas` with the daemon on, in a private runtime directory."""

    def __init__(self, env: dict[str, str], runtime: Path, cwd: Path) -> None:
        self.env = env
        self.runtime = runtime
        self.cwd = cwd

    def start(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "gocaas", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env | (env or {}),
            cwd=cwd or self.cwd,
        )

    def run(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = self.start(*args, env=env, cwd=cwd)
        stdout, stderr = proc.communicate(timeout=600)
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    @property
    def directory(self) -> Path:
        return self.runtime / "gocaas"

    def paths(self) -> DaemonPaths:
        sockets = list(self.directory.glob("d-*.sock"))
        assert len(sockets) == 1, sockets
        return DaemonPaths(str(self.directory), sockets[0].stem.removeprefix("d-"))

    def wait_up(self, timeout: float = 120.0) -> DaemonPaths:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for sock in self.directory.glob("d-*.sock"):
                if sock.with_suffix(".pid").exists() and _connectable(sock):
                    return self.paths()
            time.sleep(0.1)
        logs = "\n".join(p.read_text() for p in self.directory.glob("*.log"))
        pytest.fail(f"no daemon came up in {timeout} s; logs:\n{logs}")

    def log(self) -> str:
        return "\n".join(p.read_text() for p in self.directory.glob("*.log"))

    def pid(self) -> int:
        recorded = PidFile.read(self.paths().pid)
        assert recorded is not None
        return recorded.pid

    def test_is_served(self, module: Path, out: Path) -> None:
        """`gocaas test MODULE --out OUT` passes, and the daemon ran it."""
        proc = self.run("test", str(module), "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        assert f"--out {out}\n" in self.log()


def _connectable(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def _stat_fields(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and (fields := _stat_fields(int(proc.name))):
            children.setdefault(int(fields[1]), []).append(int(proc.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _go_tests(root: int) -> set[int]:
    """The running `go test` commands and test binaries under root (they run in sessions of their own)."""
    found = set()
    for pid in _descendants(root):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not _gone(pid) and (argv[0].endswith(b".test") or argv[1:2] == [b"test"]):
            found.add(pid)
    return found


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.1)


@pytest.fixture
def daemonised(settings: Settings, tmp_path: Path) -> Iterator[Daemonised]:
    # A short path: a Unix socket's path must fit in 108 bytes, and pytest's tmp_path may not.
    runtime = Path(tempfile.mkdtemp(prefix="gd", dir="/tmp"))
    env = settings_env(settings) | {
        "GOCAAS_DAEMON": "on",
        "XDG_RUNTIME_DIR": str(runtime),
        "TMPDIR": str(runtime),  # never fall back to the shared /tmp/gocaas-UID
    }
    env.pop("CI", None)
    helper = Daemonised(env, runtime, tmp_path)
    try:
        yield helper
    finally:
        subprocess.run(
            [sys.executable, "-m", "gocaas", "daemon", "stop", "--wait", "60"],
            env=env,
            timeout=120,
            check=False,
        )
        shutil.rmtree(runtime, ignore_errors=True)


def _report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        return json.loads(proc.stdout)  # type: ignore[no-any-return]
    except ValueError:
        pytest.fail(f"no JSON report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def _copy(name: str, dest: Path) -> Path:
    return Path(shutil.copytree(GOTEST / name, dest / name))


def test_later_commands_run_in_the_daemon_with_the_clients_directory_env_and_streams(
    daemonised: Daemonised, tmp_path: Path, settings: Settings
) -> None:
    module = _copy("passing", tmp_path)
    first = daemonised.run("test", ".", "--json", "--out", "out1", cwd=module)
    assert first.returncode == 0, first.stderr
    paths = daemonised.wait_up()
    assert "process" not in daemonised.log()  # the first ran in its own process and started the daemon

    home = tmp_path / "other-home"  # the client's environment decides the data directory, not the daemon's
    second = daemonised.run(
        "test", ".", "--json", "--out", "out2", cwd=module, env={"GOCAAS_HOME": str(home)}
    )
    assert second.returncode == 0, second.stderr
    report = _report(second)  # stdout is the JSON alone; the human summary went to stderr
    assert report["status"] == "succeeded"
    assert report["tests"]["summary"]["passed"] == _report(first)["tests"]["summary"]["passed"] > 0
    assert "tests:" in second.stderr and "tests:" not in second.stdout
    assert (module / "out2" / "junit.xml").is_file()  # --out relative to the client's directory
    assert (home / "builds" / report["build_id"]).is_dir()
    assert not (settings.home / "builds" / report["build_id"]).exists()
    assert f"process {_child_of(daemonised, 'out2')}: exit 0" in daemonised.log()
    assert Path(paths.socket).exists()


def test_commands_at_once_each_get_their_own_child(daemonised: Daemonised, tmp_path: Path) -> None:
    modules = [_copy("passing", tmp_path / f"m{i}") for i in range(3)]
    daemonised.run("test", str(modules[0]), "--out", str(tmp_path / "first"))
    daemonised.wait_up()
    clients = [
        daemonised.start("test", str(module), "--json", "--out", str(tmp_path / f"out{i}"))
        for i, module in enumerate(modules)
    ]
    outputs = [client.communicate(timeout=600) for client in clients]
    for client, (stdout, stderr) in zip(clients, outputs, strict=True):
        assert client.returncode == 0, stderr
        assert json.loads(stdout)["status"] == "succeeded"
    children = {_child_of(daemonised, f"out{i}") for i in range(3)}
    assert len(children) == 3  # a process each, all served by the one daemon
    assert all(f"process {child}: exit 0" in daemonised.log() for child in children)


def _child_of(daemonised: Daemonised, marker: str) -> int:
    [line] = [line for line in daemonised.log().splitlines() if marker in line and ": test " in line]
    return int(line.split("process ", 1)[1].split(":", 1)[0])


def test_exit_codes_and_bad_input_are_the_same_as_in_process(daemonised: Daemonised, tmp_path: Path) -> None:
    failing = _copy("failing", tmp_path)
    daemonised.run("test", "--help")  # not a daemon command (help): but `test` is, so this starts it
    daemonised.wait_up()
    cases = [
        ("test", str(failing), "--json", "--out", str(tmp_path / "f")),
        ("test", str(tmp_path / "no-such-module"), "--json"),
        ("test", str(failing), "--shuffle", "sometimes"),
    ]
    for args in cases:
        via_daemon = daemonised.run(*args)
        in_process = daemonised.run(*args, env={"GOCAAS_DAEMON": "off"})
        assert via_daemon.returncode == in_process.returncode != 0, (
            args,
            via_daemon.stderr,
            in_process.stderr,
        )
        assert via_daemon.stdout.strip().startswith("{") == in_process.stdout.strip().startswith("{")
    assert daemonised.log().count(": exit 1") >= 1 and daemonised.log().count(": exit 2") >= 2
    assert "no-such-module" in daemonised.run(*cases[1]).stderr


def _hanging_in_the_daemon(
    daemonised: Daemonised, tmp_path: Path
) -> tuple[subprocess.Popen[str], int, set[int]]:
    """A `gocaas test` of a hanging test run by the daemon: (client, the daemon's child, its go tests)."""
    hanging = _copy("hanging", tmp_path)
    daemonised.run("test", str(_copy("passing", tmp_path)), "--out", str(tmp_path / "p"))
    daemonised.wait_up()
    client = daemonised.start("test", str(hanging), "--test-timeout", "600", "--out", str(tmp_path / "h"))
    _wait_for(lambda: "--test-timeout" in daemonised.log(), 60, "the daemon forked the command")
    child = _child_of(daemonised, "--test-timeout")
    _wait_for(lambda: len(_go_tests(child)) >= 2, 120, "go test and the test binary are running")
    go_tests = _go_tests(child)
    return client, child, go_tests


def test_ctrl_c_reaches_the_command_and_its_go_processes(daemonised: Daemonised, tmp_path: Path) -> None:
    client, child, go_tests = _hanging_in_the_daemon(daemonised, tmp_path)
    client.send_signal(signal.SIGINT)
    _, stderr = client.communicate(timeout=120)
    assert client.returncode == 130, stderr  # Typer's exit for a KeyboardInterrupt, as a shell's for Ctrl-C
    _wait_for(
        lambda: all(_gone(pid) for pid in go_tests | {child}), 60, "the command and its go processes end"
    )


def test_ctrl_c_stops_go_in_process_too(daemonised: Daemonised, tmp_path: Path) -> None:
    hanging = _copy("hanging", tmp_path)
    client = daemonised.start(
        "test",
        str(hanging),
        "--test-timeout",
        "600",
        "--out",
        str(tmp_path / "h"),
        env={"GOCAAS_DAEMON": "off"},
    )
    _wait_for(lambda: len(_go_tests(client.pid)) >= 2, 120, "go test and the test binary are running")
    go_tests = _go_tests(client.pid)
    client.send_signal(signal.SIGINT)
    _, stderr = client.communicate(timeout=120)
    assert client.returncode == 130, stderr  # Typer's exit for a KeyboardInterrupt, as a shell's for Ctrl-C
    _wait_for(lambda: all(_gone(pid) for pid in go_tests), 60, "go test and the test binary end")


def test_a_killed_client_stops_its_command(daemonised: Daemonised, tmp_path: Path) -> None:
    client, child, go_tests = _hanging_in_the_daemon(daemonised, tmp_path)
    client.kill()
    client.communicate(timeout=60)
    _wait_for(lambda: "its client went away" in daemonised.log(), 60, "the daemon noticed")
    _wait_for(
        lambda: all(_gone(pid) for pid in go_tests | {child}), 60, "the command and its go processes end"
    )
    # and the daemon still serves
    daemonised.test_is_served(_copy("passing", tmp_path / "again"), tmp_path / "p2")


def test_a_dead_daemons_socket_is_replaced(daemonised: Daemonised, tmp_path: Path) -> None:
    module = _copy("passing", tmp_path)
    daemonised.run("test", str(module), "--out", str(tmp_path / "a"))
    daemonised.wait_up()
    old = daemonised.pid()
    os.kill(old, signal.SIGKILL)
    _wait_for(lambda: _gone(old), 30, "the daemon died")
    assert list(daemonised.directory.glob("d-*.sock"))  # left behind
    proc = daemonised.run("test", str(module), "--out", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr  # ran in-process
    _wait_for(lambda: Path(daemonised.paths().pid).exists() and daemonised.pid() != old, 120, "a new daemon")
    daemonised.wait_up()
    daemonised.test_is_served(module, tmp_path / "c")


def test_garbage_on_the_socket_does_not_stop_the_daemon(daemonised: Daemonised, tmp_path: Path) -> None:
    module = _copy("passing", tmp_path)
    daemonised.run("test", str(module), "--out", str(tmp_path / "a"))
    paths = daemonised.wait_up()
    for payload in (b"\xff\xff\xff\xffjunk", b"\x00\x00\x00\x05[1,2]", b"\x00\x00\x00\x02{}", b"\x00"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(paths.socket)
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            try:
                reply = sock.recv(100)
            except ConnectionResetError:  # closed with the junk unread
                reply = b""
            assert reply == b""  # closed without a reply
    assert daemonised.log().count("bad request") == 3  # the last one is only a client that died mid-request
    daemonised.test_is_served(module, tmp_path / "b")


def test_stop_and_idle_exit_leave_no_daemon(daemonised: Daemonised, tmp_path: Path) -> None:
    module = _copy("passing", tmp_path)
    daemonised.run("test", str(module), "--out", str(tmp_path / "a"))
    paths = daemonised.wait_up()
    pid = daemonised.pid()
    stop = daemonised.run("daemon", "stop")
    assert stop.returncode == 0 and "stopped 1 daemon" in stop.stdout, stop.stderr
    assert _gone(pid) and not Path(paths.socket).exists() and not Path(paths.pid).exists()

    daemonised.run("test", str(module), "--out", str(tmp_path / "b"), env={"GOCAAS_DAEMON_IDLE": "2"})
    daemonised.wait_up()
    pid = daemonised.pid()
    _wait_for(lambda: _gone(pid), 60, "the idle daemon exited")
    assert not list(daemonised.directory.glob("d-*.sock"))


def test_bad_daemon_settings_are_refused(daemonised: Daemonised, tmp_path: Path) -> None:
    module = _copy("passing", tmp_path)
    proc = daemonised.run("test", str(module), env={"GOCAAS_DAEMON": "sometimes"})
    assert proc.returncode == 2
    assert "GOCAAS_DAEMON" in proc.stderr and "sometimes" in proc.stderr
    proc = daemonised.run("test", str(module), env={"GOCAAS_DAEMON_IDLE": "soon"})
    assert proc.returncode == 2
    assert "GOCAAS_DAEMON_IDLE" in proc.stderr and "soon" in proc.stderr
    assert not list(daemonised.runtime.rglob("*.sock"))  # refused before any daemon was started
    with pytest.raises(BadMode, match="GOCAAS_DAEMON_IDLE"):
        idle_seconds({"GOCAAS_DAEMON_IDLE": "-5"})
    with pytest.raises(BadMode, match="GOCAAS_DAEMON_IDLE"):
        idle_seconds({"GOCAAS_DAEMON_IDLE": "soon"})
    assert idle_seconds({"GOCAAS_DAEMON_IDLE": "2.5"}) == 2.5


def test_a_runtime_directory_others_can_use_is_never_used(daemonised: Daemonised, tmp_path: Path) -> None:
    daemonised.directory.mkdir()
    daemonised.directory.chmod(0o777)
    module = _copy("passing", tmp_path)
    for out in ("a", "b"):
        proc = daemonised.run("test", str(module), "--out", str(tmp_path / out))
        assert proc.returncode == 0, proc.stderr
    time.sleep(2)
    assert list(daemonised.runtime.rglob("*")) == [daemonised.directory]  # no socket, lock or log anywhere


def test_when_a_daemon_is_wanted() -> None:
    assert daemon_wanted({})
    assert not daemon_wanted({"CI": "true"})  # one command per CI job: a daemon would only linger
    assert daemon_wanted({"CI": "true", "GOCAAS_DAEMON": "on"})
    assert not daemon_wanted({"GOCAAS_DAEMON": "OFF"})
    with pytest.raises(BadMode, match="GOCAAS_DAEMON must be one of auto, on, off, not 'yes please'"):
        daemon_wanted({"GOCAAS_DAEMON": "yes please"})


def test_the_fingerprint_follows_the_installed_code(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    source = tmp_path / "pkg" / "mod.py"
    source.write_text("A = 1\n")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    before = package_state(str(tmp_path))
    (tmp_path / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"x")
    assert package_state(str(tmp_path)) == before  # compiled files are not the code
    source.write_text("A = 2\n")
    os.utime(source, ns=(0, before[0][2]))  # same size, same mtime: a real edit changes one of them
    assert package_state(str(tmp_path)) == before
    source.write_text("A = 22\n")
    assert package_state(str(tmp_path)) != before
    assert fingerprint() == fingerprint()


def test_a_daemon_for_newer_code_stops_the_one_for_older_code(daemonised: Daemonised, tmp_path: Path) -> None:
    daemonised.directory.mkdir(mode=0o700)
    # Stand-ins for daemons left running: a process whose command line names the daemon module.
    script = "import time; time.sleep(300)  # gocaas.daemon.server"
    older = subprocess.Popen([sys.executable, "-c", script])
    other_install = subprocess.Popen([sys.executable, "-c", script])
    try:
        mine = PidFile.mine()
        stale = PidFile(older.pid, mine.executable, mine.root, "0" * 24)
        (daemonised.directory / "d-000000000000000000000001.pid").write_text(stale.text())
        foreign = PidFile(other_install.pid, "/opt/other/python3", mine.root, "0" * 24)
        (daemonised.directory / "d-000000000000000000000002.pid").write_text(foreign.text())
        daemonised.run("test", str(_copy("passing", tmp_path)), "--out", str(tmp_path / "a"))
        daemonised.wait_up()
        older.wait(timeout=60)  # SIGTERMed: this interpreter and package, older code
        assert older.returncode == -signal.SIGTERM
        assert other_install.poll() is None  # another interpreter's daemon is left alone
        assert f"daemon {older.pid} serves older code" in daemonised.log()
        assert mine.code == code_digest()
    finally:
        for proc in (older, other_install):
            proc.kill()
            proc.wait()
