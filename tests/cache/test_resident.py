"""`cacheprog --resident`: go commands handed to a resident cache program (real go, real processes)."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gocaas.cache import Store, cacheprog_command
from gocaas.cache.maintenance import clear_namespace, gc, verify
from gocaas.cache.options import parse_args
from gocaas.cache.resident import attach, resident_key, socket_path
from gocaas.cache.resident_server import ResidentStore, running, stop
from gocaas.cache.tally import tally
from tests.cache.conftest import (
    HELLO,
    LiveServer,
    Session,
    go,
    go_env,
    python_env,
    read_stats,
    remote_args,
    sha,
)
from tests.cache.test_go import _snapshot
from tests.conftest import CliFn

IDLE = "4"  # seconds: the residents these tests start go away soon after


def _resident_env(tmp: Path, store: Path, runtime: Path, *extra: str) -> dict[str, str]:
    prog = cacheprog_command(store, extra=["--resident", "--resident-idle", IDLE, *extra])
    return go_env(tmp, prog, XDG_RUNTIME_DIR=str(runtime), GOCAAS_CACHEPROG_STATS=str(tmp / "stats.jsonl"))


def _socket(store: Path, runtime: Path, *extra: str) -> Path:
    key = resident_key(parse_args(["--dir", str(store), *extra]))
    path = socket_path(key, environ={"XDG_RUNTIME_DIR": str(runtime)})
    assert path is not None
    return Path(path)


def _wait_for(predicate: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _listening(path: Path) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def _hello(tmp: Path, env: dict[str, str], name: str) -> bytes:
    out = tmp / name
    go(["build", "-o", str(out), "."], HELLO, env)
    return out.read_bytes()


def test_later_go_commands_are_served_by_one_resident_program(
    tmp_path: Path, warm_store: Path, runtime: Path
) -> None:
    env = _resident_env(tmp_path, warm_store, runtime)
    first = _hello(tmp_path, env, "first")
    sock = _socket(warm_store, runtime)
    _wait_for(lambda: _listening(sock), "the resident program the first go command started")

    second = _hello(tmp_path, env, "second")
    results: list[bytes] = []
    builds = [threading.Thread(target=lambda n=n: results.append(_hello(tmp_path, env, n))) for n in "ab"]
    for build in builds:
        build.start()
    for build in builds:
        build.join()

    assert second == first and results == [first, first]
    stats = read_stats(tmp_path / "stats.jsonl")
    assert len(stats) == 4
    assert "resident" not in stats[0], "the first go command was served by the program it started"
    later = stats[1:]
    assert all(s["resident"] for s in later), later
    assert len({s["pid"] for s in later}) == 1, "one resident program served them all"
    totals = tally([tmp_path / "stats.jsonl"])
    assert totals["go_commands"] == 4 and totals["resident_served"] == 3
    assert stats[0]["pid"] not in {s["pid"] for s in later}
    # each -o name is a link of its own (one miss and put); everything else hits, as it did the first time
    assert all(s["gets"] == stats[0]["gets"] > 50 and s["misses"] <= 1 for s in later), stats


def test_what_a_resident_program_puts_is_in_the_store(
    tmp_path: Path, warm_store: Path, runtime: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(warm_store, store)
    env = _resident_env(tmp_path, store, runtime)
    _hello(tmp_path, env, "prime")
    _wait_for(lambda: _listening(_socket(store, runtime)), "the resident program")
    module = tmp_path / "m"
    shutil.copytree(HELLO, module)
    main = module / "main.go"
    main.write_text(main.read_text().replace("hello from gocaas", "put through a resident program"))

    go(["build", "-o", str(tmp_path / "bin"), "."], module, env)
    built = (tmp_path / "bin").read_bytes()
    put = read_stats(tmp_path / "stats.jsonl")[-1]
    assert put["resident"] and put["puts"] >= 1 and put["misses"] >= 1

    plain = go_env(tmp_path, cacheprog_command(store), GOCAAS_CACHEPROG_STATS=str(tmp_path / "plain.jsonl"))
    go(["build", "-o", str(tmp_path / "bin"), "."], module, plain)  # the same -o: the same link action
    (seen,) = read_stats(tmp_path / "plain.jsonl")
    assert "resident" not in seen and seen["misses"] == 0 and seen["hits"] == seen["gets"]
    assert (tmp_path / "bin").read_bytes() == built


def test_a_read_only_resident_program_never_writes(tmp_path: Path, warm_store: Path, runtime: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(warm_store, store)
    before = _snapshot(store)
    env = _resident_env(tmp_path, store, runtime, "--read-only")
    module = tmp_path / "m"
    shutil.copytree(HELLO, module)
    main = module / "main.go"
    main.write_text(main.read_text().replace("hello from gocaas", "not in the store"))
    for name in ("one", "two", "three"):
        go(["build", "-o", str(tmp_path / name), "."], module, env)
        if name == "one":
            _wait_for(lambda: _listening(_socket(store, runtime, "--read-only")), "the read-only resident")
    stats = read_stats(tmp_path / "stats.jsonl")
    assert [s.get("resident", False) for s in stats] == [False, True, True]
    assert all(s["puts"] == 0 and s["misses"] >= 1 and s["read_only"] for s in stats)
    assert _snapshot(store) == before
    assert not _socket(store, runtime).exists(), "a writable program has a socket of its own"


def test_a_resident_program_forgets_entries_when_the_epoch_moves(tmp_path: Path) -> None:
    plain = Store(tmp_path / "store")
    action = sha(b"action")
    plain.put("default", action, sha(b"one"), b"one")
    resident = ResidentStore(tmp_path / "store")
    first = resident.lookup("default", action)
    assert first is not None and first[0].output_id == sha(b"one")

    plain.put("default", action, sha(b"two"), b"two")  # what a --refill session does behind its back
    held = resident.lookup("default", action)
    assert held is not None and held[0].output_id == sha(b"one"), "held in memory, not read again"
    resident.refresh()
    assert resident.lookup("default", action)[0].output_id == sha(b"one")  # type: ignore[index]

    plain.bump_epoch()
    resident.refresh()
    again = resident.lookup("default", action)
    assert again is not None and again[0].output_id == sha(b"two")


def test_what_replaces_or_removes_entries_moves_the_epoch(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = Store(root, max_size=None, min_age_s=0)
    store.put("default", sha(b"a"), sha(b"body"), b"body")
    epoch = store.epoch()

    session = Session(root, "--refill", env=python_env())
    assert session.close() == 0
    assert store.epoch() > epoch, "a --refill session replaces entries"
    epoch = store.epoch()

    assert verify(store).removed == []
    assert store.epoch() == epoch, "a verify that removed nothing leaves it"
    (root / "objects" / sha(b"body").hex()[:2] / sha(b"body").hex()).write_bytes(b"rot!")
    assert verify(store).removed
    assert store.epoch() > epoch
    epoch = store.epoch()

    store.put("default", sha(b"b"), sha(b"other"), b"other")
    assert gc(store, 0).removed_objects >= 1
    assert store.epoch() > epoch


def test_a_stale_socket_is_replaced_and_the_build_goes_on(
    tmp_path: Path, warm_store: Path, runtime: Path
) -> None:
    import socket

    sock = _socket(warm_store, runtime)
    sock.parent.mkdir(mode=0o700, exist_ok=True)
    with socket.socket(socket.AF_UNIX) as dead:  # bound, never listening: what a killed program leaves
        dead.bind(str(sock))
    assert not _listening(sock)
    env = _resident_env(tmp_path, warm_store, runtime)
    first = _hello(tmp_path, env, "first")
    _wait_for(lambda: _listening(sock), "a resident program in place of the dead one")
    assert _hello(tmp_path, env, "second") == first
    assert [s.get("resident", False) for s in read_stats(tmp_path / "stats.jsonl")] == [False, True]


def test_a_runtime_directory_others_can_use_is_not_used(
    tmp_path: Path, warm_store: Path, runtime: Path
) -> None:
    shared = runtime / "gocaas"
    shared.mkdir()
    shared.chmod(0o777)
    env = _resident_env(tmp_path, warm_store, runtime)
    first = _hello(tmp_path, env, "first")
    time.sleep(1)
    assert _hello(tmp_path, env, "second") == first
    assert [s.get("resident", False) for s in read_stats(tmp_path / "stats.jsonl")] == [False, False]
    assert list(shared.iterdir()) == [], "no socket where other users could reach it"


def test_a_resident_program_takes_only_its_own_key_and_a_valid_namespace(
    tmp_path: Path, warm_store: Path, runtime: Path
) -> None:
    env = _resident_env(tmp_path, warm_store, runtime)
    _hello(tmp_path, env, "prime")
    sock = _socket(warm_store, runtime)
    _wait_for(lambda: _listening(sock), "the resident program")
    code = (
        "import sys; from gocaas.cache.resident import attach; "
        "sys.exit(0 if attach(sys.argv[1], sys.argv[2], '', sys.argv[3]) else 3)"
    )

    def attached(key: str, namespace: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-c", code, key, str(sock), namespace],
            env=python_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )

    assert attached("another store's key", "default").returncode == 3, "refused: serve the go command here"
    key = resident_key(parse_args(["--dir", str(warm_store)]))
    for namespace in ("../up", ".hidden", "a/b"):
        assert attached(key, namespace).returncode == 3, namespace
    taken = attached(key, "default")
    assert taken.returncode == 0 and b"KnownCommands" in taken.stdout, "the resident program's hello"
    assert attach("another store's key", str(tmp_path / "no-such.sock"), "") is False


def test_the_resident_program_ends_when_idle(tmp_path: Path, warm_store: Path, runtime: Path) -> None:
    from gocaas.cache.files import lock_file, unlock_file

    env = _resident_env(tmp_path, warm_store, runtime)
    env["GOCACHEPROG"] = env["GOCACHEPROG"].replace(f"--resident-idle {IDLE}", "--resident-idle 0.5")
    _hello(tmp_path, env, "prime")
    sock = _socket(warm_store, runtime)
    lock = Path(f"{sock}.lock")
    _wait_for(lock.exists, "the resident program to start (its lock file stays)")

    def ended() -> bool:
        fd = lock_file(str(lock), wait=False)
        if fd is None:
            return False  # still held: still running
        unlock_file(fd)
        return True

    _wait_for(ended, "the idle resident program to end")
    assert not sock.exists(), "it removed its socket"


@pytest.mark.parametrize("other", ["--refill", "--finish-before-close"])
def test_resident_refuses_the_options_it_cannot_serve(tmp_path: Path, other: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gocaas.cache.prog", "--dir", str(tmp_path), "--resident", other],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert f"--resident does not work with {other.split('=')[0]}" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_residents_are_listed_and_stopped_after_their_go_commands(
    tmp_path: Path, warm_store: Path, runtime: Path, cli: CliFn
) -> None:
    env = _resident_env(tmp_path, warm_store, runtime)
    _hello(tmp_path, env, "prime")
    sock = _socket(warm_store, runtime)
    _wait_for(lambda: _listening(sock), "the resident program")
    _hello(tmp_path, env, "served")
    listed = cli("cache", "residents", env={"XDG_RUNTIME_DIR": str(runtime), "COLUMNS": "300"})
    assert listed.returncode == 0, listed.stderr
    (resident,) = running(str(runtime / "gocaas"))
    assert resident.store == str(warm_store.resolve()) and resident.namespaces == ("default",)
    assert str(resident.pid) in listed.stdout and "read-write" in listed.stdout

    # A go command in the middle of its session, spoken for by hand: the program go would start hands
    # our pipes over, and the resident program answers on them.
    code = "import sys; from gocaas.cache.resident import attach; sys.exit(0 if attach(*sys.argv[1:]) else 3)"
    key = resident_key(parse_args(["--dir", str(warm_store)]))
    go_side = subprocess.Popen(
        [sys.executable, "-c", code, key, str(sock), ""],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=python_env(),
    )
    assert go_side.wait(timeout=30) == 0
    assert go_side.stdout is not None and go_side.stdin is not None
    assert b"KnownCommands" in go_side.stdout.readline()
    assert stop(resident, timeout=1.5) is False, "it serves a go command: that one finishes first"
    go_side.stdin.write(b'{"ID":1,"Command":"close"}\n\n')
    go_side.stdin.flush()
    assert go_side.stdout.readline().strip() == b'{"ID":1}'
    _wait_for(lambda: stop(resident, timeout=0.1), "the resident program to end after its last go command")
    assert running(str(runtime / "gocaas")) == []
    after = cli("cache", "residents", env={"XDG_RUNTIME_DIR": str(runtime)})
    assert "no resident cache programs" in after.stdout


def test_a_resident_program_asks_the_remote_for_its_go_commands(
    tmp_path: Path, warm_store: Path, runtime: Path, live_server: Callable[..., LiveServer]
) -> None:
    server = live_server(warm_store, read_only=True)
    local = tmp_path / "fresh"
    env = _resident_env(tmp_path, local, runtime, *remote_args(server.url))
    first = _hello(tmp_path, env, "hello")
    (s1,) = read_stats(tmp_path / "stats.jsonl")
    assert "resident" not in s1 and s1["remote_hits"] > 50
    _wait_for(lambda: _listening(_socket(local, runtime, *remote_args(server.url))), "the resident program")
    assert not _socket(local, runtime).exists(), "without the remote: a program of its own"

    assert clear_namespace(Store(local), "default") > 50  # a fresh worker again, and the resident forgets
    assert _hello(tmp_path, env, "hello") == first
    s2 = read_stats(tmp_path / "stats.jsonl")[1]
    assert s2["resident"] and s2["remote_hits"] > 50 and s2["remote_errors"] == 0
    assert s2["hits"] >= s2["gets"] - 1


def test_one_resident_program_serves_every_namespace_apart(tmp_path: Path, runtime: Path) -> None:
    store = tmp_path / "store"
    stats = tmp_path / "stats.jsonl"
    env = python_env(XDG_RUNTIME_DIR=str(runtime), GOCAAS_CACHEPROG_STATS=str(stats))

    def session(namespace: str) -> Session:
        return Session(store, "--namespace", namespace, "--resident", "--resident-idle", IDLE, env=env)

    assert session("a").close() == 0  # served by itself; it starts the resident program
    _wait_for(lambda: _listening(_socket(store, runtime)), "the resident program")
    action, body = sha(b"action"), b"built in namespace a"
    writer = session("a")
    assert "Err" not in writer.put(action, body)
    assert writer.close() == 0
    other, same = session("b"), session("a")
    assert other.get(action).get("Miss") is True, "namespace b sees nothing of a's"
    assert same.get(action)["OutputID"] == base64.b64encode(sha(body)).decode()
    assert other.close() == 0 and same.close() == 0

    lines = read_stats(stats)[1:]
    assert [line["namespace"] for line in lines] == ["a", "b", "a"]
    assert all(line["resident"] for line in lines) and len({line["pid"] for line in lines}) == 1
    (resident,) = running(str(runtime / "gocaas"))
    assert resident.namespaces == ("a", "b") and resident.pid == lines[0]["pid"]
    assert Store(store).lookup("b", action) is None and Store(store).lookup("a", action) is not None
