"""`gocaas cacheprog` spoken to over its pipes as the go command does (no go here; see test_go.py)."""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gocaas.cache import Store, cacheprog_argv, cacheprog_command, usage
from gocaas.cache.command import LAUNCHER, go_quote
from gocaas.cache.diskspace import free_space
from gocaas.cache.options import parse_args, parse_size
from tests.cache.conftest import Session, age, prog_argv, python_env, read_stats, sha

AID = sha(b"an action")
BODY = b"\x7fELF pretend binary" * 1000


@pytest.mark.parametrize("workers", ["0", "3"])
def test_put_get_close(tmp_path: Path, workers: str) -> None:
    s = Session(tmp_path / "store", "--workers", workers)
    assert s.hello == {"ID": 0, "KnownCommands": ["get", "put", "close"]}
    assert s.get(AID) == {"ID": 1, "Miss": True}
    put = s.put(AID, BODY)
    path = Path(put["DiskPath"])
    assert path.is_absolute() and path.read_bytes() == BODY and os.access(path, os.X_OK)
    assert "." not in path.name
    hit = s.get(AID)
    assert base64.b64decode(hit["OutputID"]) == sha(BODY)
    assert hit["Size"] == len(BODY) and hit["DiskPath"] == str(path)
    stamp, nanos = hit["Time"].split(".")
    assert len(nanos) == 10 and nanos.endswith("Z"), "RFC 3339 with nanoseconds, UTC"
    put_time = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.UTC)
    assert abs(put_time.timestamp() - datetime.datetime.now(datetime.UTC).timestamp()) < 60
    assert s.close() == 0


def test_object_id_is_accepted_for_output_id(tmp_path: Path) -> None:
    s = Session(tmp_path / "store")
    res = s.call("put", BODY, ActionID=AID, ObjectID=sha(BODY))
    assert "Err" not in res and Path(res["DiskPath"]).read_bytes() == BODY
    assert base64.b64decode(s.get(AID)["OutputID"]) == sha(BODY)
    s.close()


def test_errors_are_answered_not_fatal(tmp_path: Path) -> None:
    s = Session(tmp_path / "store")
    bad = s.call("put", BODY, ActionID=AID, OutputID=sha(b"something else"))
    assert "does not hash" in bad["Err"]
    assert s.get(AID)["Miss"] is True
    assert "unknown command" in s.call("stat", ActionID=AID)["Err"]
    assert "Err" in s.call("get", ActionID="not base64!")
    assert "Err" in s.call("get", ActionID=b"")  # omitted: no action ID
    empty = s.call("put", b"", ActionID=sha(b"empty"), OutputID=sha(b""))  # BodySize 0: no body line
    assert Path(empty["DiskPath"]).read_bytes() == b""
    assert s.get(sha(b"empty"))["DiskPath"] == empty["DiskPath"]
    assert s.close() == 0
    assert not list((tmp_path / "store" / "tmp").iterdir())


def test_put_of_a_held_object_checks_its_body_and_writes_only_the_entry(tmp_path: Path) -> None:
    """go test puts most objects more than once; a put naming an object the store holds is answered without
    writing it again, but its body is still hashed: a wrong body never gets an entry naming the object."""
    stats = tmp_path / "stats.jsonl"
    s = Session(tmp_path / "store", "--stats", str(stats))
    first = Path(s.put(AID, BODY)["DiskPath"])
    inode = first.stat().st_ino
    two_days_ago = first.stat().st_mtime - 2 * 86400
    os.utime(first, (two_days_ago, two_days_ago))
    again = s.put(sha(b"another action"), BODY)
    assert again["DiskPath"] == str(first) and first.stat().st_ino == inode
    assert first.stat().st_mtime > two_days_ago + 86400, "refreshed, so that no gc takes it meanwhile"
    assert base64.b64decode(s.get(sha(b"another action"))["OutputID"]) == sha(BODY)
    forged = BODY[:-1] + b"!"  # same size, other bytes, claiming the held object's ID
    bad = s.call("put", forged, ActionID=sha(b"poison"), OutputID=sha(BODY))
    assert "does not hash" in bad["Err"]
    assert s.get(sha(b"poison"))["Miss"] is True
    assert first.read_bytes() == BODY
    assert s.close() == 0
    (line,) = read_stats(stats)
    assert line["puts"] == 2 and line["put_bytes"] == 2 * len(BODY)
    assert line["put_new_bytes"] == len(BODY), "the second put added nothing"
    assert not list((tmp_path / "store" / "tmp").iterdir())


def test_many_requests_in_flight_all_answered_once(tmp_path: Path) -> None:
    s = Session(tmp_path / "store", "--workers", "4")
    bodies = {sha(b"k%d" % i): os.urandom(i * 1000) for i in range(60)}
    expected = {}
    for key, body in bodies.items():  # everything sent before anything is read
        expected[s.send("put", body, ActionID=key, OutputID=sha(body))] = ("put", key)
        expected[s.send("get", ActionID=key)] = ("get", key)
    answers = [s.read() for _ in expected]
    assert sorted(a["ID"] for a in answers) == sorted(expected)
    for a in answers:
        command, key = expected[a["ID"]]
        assert "Err" not in a
        if command == "put" or not a.get("Miss"):
            assert Path(a["DiskPath"]).read_bytes() == bodies[key]
    for key, body in bodies.items():
        assert Path(s.get(key)["DiskPath"]).read_bytes() == body
    assert s.close() == 0


def test_several_programs_share_a_store(tmp_path: Path) -> None:
    bodies = {sha(b"k%d" % i): os.urandom(5000 + i) for i in range(40)}
    problems: list[str] = []

    def client() -> None:
        s = Session(tmp_path / "store")
        for key, body in bodies.items():
            s.put(key, body)
            hit = s.get(key)
            if Path(hit["DiskPath"]).read_bytes() != body:
                problems.append(key.hex())
        s.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []


def test_namespaces_do_not_see_each_other(tmp_path: Path) -> None:
    a = Session(tmp_path / "store", "--namespace", "team-a")
    a.put(AID, BODY)
    a.close()
    b = Session(tmp_path / "store", "--namespace", "team-b")
    assert b.get(AID) == {"ID": 1, "Miss": True}
    b.close()
    a = Session(tmp_path / "store", "--namespace", "team-a")
    assert a.get(AID)["Size"] == len(BODY)
    a.close()


def test_read_only_offers_no_put_and_writes_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    Store(store).put("default", AID, sha(BODY), BODY)
    before = sorted((p, p.stat().st_mtime_ns) for p in store.rglob("*"))
    s = Session(store, "--read-only", env=python_env(GOCAAS_CACHEPROG_STATS=str(tmp_path / "stats")))
    assert s.hello["KnownCommands"] == ["get", "close"]
    assert s.get(AID)["Size"] == len(BODY)
    assert s.get(sha(b"other"))["Miss"] is True
    refused = s.call("put", b"new", ActionID=sha(b"new"), OutputID=sha(b"new"))  # the go command would not
    assert "read-only" in refused["Err"]
    assert s.close() == 0
    assert sorted((p, p.stat().st_mtime_ns) for p in store.rglob("*")) == before
    assert read_stats(tmp_path / "stats")[0]["read_only"] is True


def test_refill_misses_every_get_and_replaces_the_entries(tmp_path: Path) -> None:
    """How gocaas re-runs a go command over a damaged cache: the entry the go command would read is never
    answered, and the put that follows replaces it."""
    store = tmp_path / "store"
    Store(store).put("default", AID, sha(b"the wrong output"), b"the wrong output")
    stats = tmp_path / "stats.jsonl"
    s = Session(store, "--refill", "--stats", str(stats))
    assert s.hello["KnownCommands"] == ["get", "put", "close"]
    assert s.get(AID) == {"ID": 1, "Miss": True}
    s.put(AID, BODY)
    assert s.get(AID)["Miss"] is True, "even what this session put"
    assert s.close() == 0
    (line,) = read_stats(stats)
    assert line["refill"] is True and line["hits"] == 0 and line["misses"] == 2
    after = Session(store)
    assert base64.b64decode(after.get(AID)["OutputID"]) == sha(BODY)
    after.close()


def test_stats_line_on_close(tmp_path: Path) -> None:
    stats = tmp_path / "stats.jsonl"
    s = Session(tmp_path / "store", env=python_env(GOCAAS_CACHEPROG_STATS=str(stats)))
    s.get(AID)
    s.put(AID, BODY)
    s.put(sha(b"again"), BODY)
    s.get(AID)
    s.close()
    (line,) = read_stats(stats)
    assert line["namespace"] == "default" and line["dir"] == str(tmp_path / "store")
    names = ("gets", "hits", "misses", "hit_bytes", "puts", "put_bytes", "put_new_bytes")
    counters = {k: line[k] for k in names}
    assert counters == {
        "gets": 2,
        "hits": 1,
        "misses": 1,
        "hit_bytes": len(BODY),
        "puts": 2,
        "put_bytes": 2 * len(BODY),
        "put_new_bytes": len(BODY),
    }
    assert line["errors"] == 0 and line["duration_s"] >= 0


@pytest.mark.parametrize(
    ("budget_k", "puts"),
    [
        (200, 30),  # far over the budget: a gc runs during the session
        # Usage is accounted every tenth of the budget (25K here): the 13th 20K put is still unaccounted
        # when the session ends, and only it takes the store over 250K. Closing accounts it, and the gc runs.
        (250, 13),
    ],
    ids=["during-the-session", "the-last-puts"],
)
def test_budget_enforced_by_an_automatic_gc(tmp_path: Path, budget_k: int, puts: int) -> None:
    store = tmp_path / "store"
    s = Session(store, "--max-size", f"{budget_k}K", "--min-age", "0")
    for i in range(puts):
        s.put(sha(b"k%d" % i), bytes([i]) * 20_000)
    assert s.close() == 0
    assert usage(Store(store)) <= budget_k * 1024
    assert s.proc.stderr is not None and s.proc.stderr.read() == b""


def test_the_disk_under_min_free_starts_a_gc(small_disk: Path) -> None:
    """A session that wrote checks the disk at its end: under --min-free, the least recently used entries
    go, whatever the budget, and the store's log says why (the go command has been let go by then)."""
    root = small_disk / "store"
    store = Store(root, max_size=None)
    old = [sha(b"old %d" % i) for i in range(8)]
    for i, key in enumerate(old):
        body = bytes([i]) * (1 << 20)
        store.put("default", key, sha(body), body)
        age(store, "default", key, 3600 - i)
    s = Session(root, "--max-size", "0", "--min-free", "10M", "--min-age", "60")
    new = sha(b"new")
    s.put(new, b"fresh" * 4000)
    short = (10 << 20) - free_space(str(root))[0]
    assert short > 1 << 20
    assert s.close() == 0
    gone = [k for k in old if store.get("default", k) is None]
    assert gone == old[: len(gone)] and short // (1 << 20) < len(gone) < len(old), len(gone)
    assert free_space(str(root))[0] >= 10 << 20
    assert store.get("default", new) is not None, "used within --min-age: kept"
    log = (root / "cacheprog.log").read_text()
    assert "short of min_free 10M: removed" in log, log


def test_end_of_input_without_close(tmp_path: Path) -> None:
    s = Session(tmp_path / "store")
    s.put(AID, BODY)
    assert s.proc.stdin is not None
    s.proc.stdin.close()
    assert s.proc.wait(timeout=30) == 0


@pytest.mark.parametrize("read_only", [False, True])
def test_work_after_close_lets_go_of_stderr(tmp_path: Path, read_only: bool) -> None:
    """Whoever reads the go command's stderr waits for every writer to close it: cacheprog lets go of it
    before its post-close work (prefetched entries, a gc), and says anything later in the store's log."""
    store = tmp_path / "store"
    store.mkdir()
    code = (
        "import sys, time\n"
        "from gocaas.cache.prog import detach_stderr\n"
        "sys.stderr.write('before\\n')\n"
        f"detach_stderr({str(store)!r}, read_only={read_only})\n"
        "sys.stderr.write('after\\n')\n"
        "sys.stderr.flush()\n"
        "time.sleep(20)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, env=python_env())
    try:
        assert proc.stderr is not None
        assert proc.stderr.read() == b"before\n"  # the end of the pipe, while it still works
        assert proc.poll() is None, "the pipe ended only when the process did"
        log = store / "cacheprog.log"
        if read_only:
            assert not log.exists(), "a read-only store is never written"
        else:
            deadline = time.monotonic() + 10  # written just after the pipe ended
            while log.read_bytes() != b"after\n" and time.monotonic() < deadline:
                time.sleep(0.01)
            assert log.read_bytes() == b"after\n"
    finally:
        proc.kill()
        proc.wait()


def test_protocol_error_is_fatal(tmp_path: Path) -> None:
    proc = subprocess.run(
        prog_argv(tmp_path / "store"), input=b"this is not json\n", capture_output=True, env=python_env()
    )
    assert proc.returncode == 1
    assert b"protocol error" in proc.stderr


def test_usage_and_flags(tmp_path: Path) -> None:
    bad = subprocess.run(prog_argv(tmp_path, "--bogus"), capture_output=True, text=True, env=python_env())
    assert bad.returncode == 2 and "unknown argument" in bad.stderr
    ok = subprocess.run([*prog_argv(tmp_path), "--help"], capture_output=True, text=True, env=python_env())
    assert ok.returncode == 0 and "--read-only" in ok.stdout
    opts = parse_args(["--dir=/d", "--namespace", "ns", "--read-only", "--max-size", "1.5G", "--workers=0"])
    assert (opts.dir, opts.namespace, opts.read_only, opts.workers) == ("/d", "ns", True, 0)
    assert not opts.refill and parse_args(["--refill"]).refill
    with pytest.raises(ValueError, match="--verify-key: bad public key: want 64 hex digits"):
        parse_args(["--verify-key", "not-a-key"])
    with pytest.raises(ValueError, match=r"--signing-key-file: .*No such file"):
        parse_args(["--signing-key-file", str(tmp_path / "missing.key")])
    assert opts.max_size == int(1.5 * (1 << 30))
    assert parse_args(["--max-size", "0"]).max_size is None
    assert str(parse_args(["--min-free", "12.5%"]).min_free) == "12.5%"
    assert parse_args(["--min-free", "0"]).min_free is None
    with pytest.raises(ValueError, match="--min-free: bad free space 'lots': want a size such as 20G"):
        parse_args(["--min-free", "lots"])
    assert parse_size("500M") == parse_size("500MiB") == 500 << 20
    for bad_size in ("-5", "-1G", "inf", "nan", "1e400", "", "G", "10QB"):
        with pytest.raises(ValueError, match="bad size"):
            parse_size(bad_size)
    # a huge pool hung allocating its locks; a NaN or negative --min-age let gc take what go is using
    for flag, bad in (("--workers", "100000000"), ("--workers", "-1"), ("--workers", "1.5"),
                      ("--min-age", "nan"), ("--min-age", "-5"), ("--remote-timeout", "inf"),
                      ("--flush-timeout", "nan")):  # fmt: skip
        with pytest.raises(ValueError, match=f"{flag}: want a"):
            parse_args([flag, bad])
    assert parse_args(["--workers", "4", "--min-age", "60"]).workers == 4
    with pytest.raises(ValueError, match="bad namespace"):
        parse_args(["--namespace", "../x"])


def test_default_dir_from_gocaas_home(tmp_path: Path) -> None:
    env = python_env(GOCAAS_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gocaas.cache.prog"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    req = {"ID": 1, "Command": "put", "ActionID": base64.b64encode(AID).decode()}
    req |= {"OutputID": base64.b64encode(sha(b"x")).decode(), "BodySize": 1}
    out, _ = proc.communicate(json.dumps(req).encode() + b'\n\n"eA=="\n', timeout=30)
    assert json.loads(out.splitlines()[1])["DiskPath"].startswith(
        str(tmp_path / "home" / "cache" / "objects")
    )


def test_lean_imports() -> None:
    """The go command starts the program per invocation: no heavy imports on its path."""
    src = str(Path(LAUNCHER).parents[2])
    code = f"import sys; sys.path.insert(0, {src!r}); import gocaas.cache.prog; print(*sorted(sys.modules))"
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    heavy = {"pydantic", "typer", "rich", "gocaas.settings", "json", "argparse", "re", "threading", "logging",
             "concurrent.futures", "pathlib", "dataclasses", "typing", "hashlib", "contextlib"}  # fmt: skip
    assert loaded & heavy == set()


def test_launcher_command_quoting(tmp_path: Path) -> None:
    weird = tmp_path / "dir with space"
    argv = cacheprog_argv(weird, namespace="ns", read_only=True)
    assert argv[1:4] == ["-I", "-S", LAUNCHER] and argv[-1] == "--read-only"
    assert f"'{weird}'" in cacheprog_command(weird)
    assert go_quote(["a", "b c", "it's", ""]) == "a 'b c' \"it's\" ''"
    with pytest.raises(ValueError):
        go_quote(["both ' and \""])
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={"PATH": os.defpath})
    out, _ = proc.communicate(b'{"ID":1,"Command":"close"}\n\n', timeout=30)
    assert out.splitlines() == [b'{"ID":0,"KnownCommands":["get","close"]}', b'{"ID":1}']
