"""The build sandbox (gocaas.go.sandbox): the module's tests cannot write the shared build cache of a
read-only namespace, the module cache or the data directory; test results are still cached by go; a missing
bwrap is a clear error when the sandbox is required, and a note when it is not."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from gocaas.cache.command import cacheprog_command
from gocaas.cache.store import Store
from gocaas.errors import FailureClass
from gocaas.go.sandbox import Sandbox, exec_only, find_bwrap, nested, probe, python_paths
from gocaas.go.toolchain import Toolchain
from gocaas.pipeline.run import TEST_STAGES, run_build
from gocaas.report.model import BuildReport
from gocaas.report.tests import PackageState
from gocaas.settings import Settings
from gocaas.spec import BuildOptions, BuildSpec, SourceSpec, Target, TestOptions
from tests.cache.conftest import TOKEN, LiveServer
from tests.conftest import EXAMPLES, BuildFn, skip_or_fail

SANDBOXED = "go commands run in a bubblewrap sandbox"

INTRUDER_TEST = """package intruder

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Filled in by the Python test: the store's directory, the remote cache's address ("" for none).
const store, remote = "STORE", "REMOTE"

func TestIntrude(t *testing.T) {
	modcache := os.Getenv("GOMODCACHE")
	for name, dir := range map[string]string{
		"store":    store,
		"modcache": modcache,
		"home":     filepath.Dir(modcache),
		"gocache":  os.Getenv("GOCACHE"),
	} {
		// as a hostile test would: make a read-only bind mount writable first
		remount := syscall.Mount("none", dir, "", syscall.MS_REMOUNT|syscall.MS_BIND, "")
		err := os.WriteFile(filepath.Join(dir, "intruder-NONCE"), []byte(name), 0o644)
		t.Logf("%s %s: remount: %v, write: %v", name, dir, remount, err)
	}
	// the go command's own descriptors (its pipes to the cache program among them), as a hijacker would
	// open them to speak the cache protocol in its place
	fds := fmt.Sprintf("/proc/%d/fd", os.Getppid())
	entries, _ := os.ReadDir(fds)
	for _, e := range entries {
		if f, err := os.OpenFile(filepath.Join(fds, e.Name()), os.O_WRONLY, 0); err == nil {
			f.Close()
			t.Errorf("BREACH pipes: opened the go command's descriptor %s", e.Name())
			break
		}
	}
	if os.Getenv("GOCAAS_CACHE_TOKEN") != "" {
		t.Errorf("BREACH token: the remote cache's token is in the environment")
	}
	if remote != "" {
		if conn, err := net.DialTimeout("tcp", remote, 2*time.Second); err == nil {
			conn.Close()
			t.Errorf("BREACH network: reached the remote cache at %s", remote)
		}
	}
}
"""


@pytest.fixture(scope="module")
def bwrap() -> Path:
    found = find_bwrap(None, "/usr/local/bin:/usr/bin:/bin")
    if found is None or probe(found) is not None:
        skip_or_fail(f"bubblewrap is needed: {probe(found) if found else 'bwrap not found'}")
    assert found is not None
    return found


def intruder(root: Path, store: Path, remote: str = "") -> tuple[Path, str]:
    """A module whose test writes a file named for a fresh nonce (its result is never cached) into the
    store, the module cache, the data directory and GOCACHE, and fails if it sees the remote cache's token
    or reaches the remote (host:port)."""
    nonce = uuid.uuid4().hex
    root.mkdir(parents=True)
    (root / "go.mod").write_text("module example.test/intruder\n\ngo 1.22\n")
    source = INTRUDER_TEST.replace("NONCE", nonce).replace("STORE", str(store)).replace("REMOTE", remote)
    (root / "intruder_test.go").write_text(source)
    return root, f"intruder-{nonce}"


def worker(fresh_settings, settings: Settings, **overrides: object) -> Settings:  # type: ignore[no-untyped-def]
    """A data directory of its own over the session's (warm) store."""
    made: Settings = fresh_settings(**overrides)
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    (made.home / "cache").symlink_to(settings.cache_dir)
    made.gomodcache.mkdir(parents=True, exist_ok=True)
    return made


def run_test_stages(module: Path, settings: Settings, out: Path) -> BuildReport:
    spec = BuildSpec(
        source=SourceSpec(kind="directory", location=str(module)),
        options=BuildOptions(targets=(Target.parse("linux/amd64"),), tests=TestOptions(shuffle="off")),
    )
    return run_build(spec, settings, out_dir=out, stages=TEST_STAGES)


def said_by_tests(report: BuildReport) -> str:
    assert report.tests is not None
    return "\n".join(test.output for test in report.tests.tests)


def log_of(settings: Settings, report: BuildReport) -> str:
    logs = settings.builds_dir / report.build_id / "logs"
    return "\n".join(path.read_text() for path in sorted(logs.iterdir()))


def test_test_results_are_still_cached_in_the_sandbox(
    settings: Settings,
    fresh_settings,  # type: ignore[no-untyped-def]
    bwrap: Path,
    tmp_path: Path,
) -> None:
    sandboxed = worker(fresh_settings, settings, sandbox="on")
    module = tmp_path / "multi"
    shutil.copytree(EXAMPLES / "multi", module)
    reports = [run_test_stages(module, sandboxed, tmp_path / "out") for _ in range(2)]
    for report in reports:
        assert report.failure is None, report.failure
        assert SANDBOXED in log_of(sandboxed, report)
        assert report.sandboxed is True
    assert reports[1].tests is not None
    passed = [p for p in reports[1].tests.packages if p.state == PackageState.PASSED]
    assert passed, reports[1].tests.packages
    assert all(p.cached for p in passed), passed


@pytest.mark.parametrize("sandbox", ["auto", "off"])
def test_the_module_tests_cannot_write_a_read_only_store_or_the_data_directory(
    build: BuildFn,
    settings: Settings,
    fresh_settings,  # type: ignore[no-untyped-def]
    bwrap: Path,
    tmp_path: Path,
    sandbox: str,
) -> None:
    reader = worker(fresh_settings, settings, sandbox=sandbox, cache_read_only=True)
    module, name = intruder(tmp_path / "intruder", reader.cache_dir)
    written = [settings.cache_dir / name, reader.gomodcache / name, reader.home / name]
    try:
        report = run_test_stages(module, reader, tmp_path / "out")
        assert report.sandboxed is (sandbox == "auto")
        if sandbox == "auto":
            assert report.failure is None, report.failure
            assert SANDBOXED in log_of(reader, report)
            assert [path for path in written if path.exists()] == []
        else:  # unsandboxed, the same test writes them all and opens go's pipes: what the sandbox is for
            assert report.failure is not None and "BREACH pipes" in said_by_tests(report), report.failure
            assert SANDBOXED not in log_of(reader, report)
            assert [path for path in written if path.exists()] == written
        # A read-only namespace's build has a GOCACHE of its own (go insists on writing one), sandbox or not.
        assert not (settings.gocache / name).exists()
        assert not (reader.gocache / name).exists()
    finally:
        for path in written:
            path.unlink(missing_ok=True)


@pytest.mark.parametrize("sandbox", ["on", "off"])
def test_in_a_writable_namespace_the_tests_reach_neither_store_nor_token_nor_remote(
    settings: Settings,
    fresh_settings,  # type: ignore[no-untyped-def]
    bwrap: Path,
    tmp_path: Path,
    sandbox: str,
) -> None:
    """The cache program runs outside the sandbox (gocaas.go.outside): with a writable namespace and a remote
    tier, the tests can neither write the store nor see the token nor (without the network) reach the
    remote, while the program still uploads there. Unsandboxed, the same test does all three."""
    server = LiveServer(tmp_path / "remote-store")
    writer = worker(
        fresh_settings,
        settings,
        sandbox=sandbox,
        sandbox_network=False,
        cache_remote_url=server.url,
        cache_remote_token=TOKEN,
    )
    address = server.url.split("//", 1)[1].rstrip("/")
    module, name = intruder(tmp_path / "intruder", writer.cache_dir, address)
    stored = settings.cache_dir / name
    try:
        report = run_test_stages(module, writer, tmp_path / "out")
    finally:
        server.stop()
    try:
        said = said_by_tests(report)
        if sandbox == "on":
            assert report.failure is None, (report.failure, said)
            assert not stored.exists()
            assert report.cache is not None and report.cache.uploads > 0, "the program reached the remote"
        else:
            assert report.failure is not None and report.failure.kind == "test_failed", report.failure
            assert all(f"BREACH {what}" in said for what in ("token", "network", "pipes")), said
            assert stored.exists()
    finally:
        stored.unlink(missing_ok=True)


def test_a_required_sandbox_without_bwrap_fails_as_infrastructure(
    build: BuildFn,
    fresh_settings,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no" / "bwrap"
    required: Settings = fresh_settings(sandbox="on", sandbox_bwrap=missing)
    report = build(EXAMPLES / "hello", settings_=required, out=tmp_path / "out")
    assert report.failure is not None
    assert report.failure.failure_class == FailureClass.INFRASTRUCTURE
    assert report.failure.kind == "sandbox"
    assert str(missing) in report.failure.message and "GOCAAS_SANDBOX=off" in report.failure.message


def test_an_automatic_sandbox_without_bwrap_builds_and_says_so(
    build: BuildFn,
    settings: Settings,
    fresh_settings,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    unsandboxed = worker(fresh_settings, settings, sandbox="auto", sandbox_bwrap=tmp_path / "no" / "bwrap")
    report = build(EXAMPLES / "hello", settings_=unsandboxed, out=tmp_path / "out")
    assert report.failure is None, report.failure
    notes = [note for stage in report.stages for note in stage.notes]
    assert any(note.startswith("not sandboxed:") and "is not an executable file" in note for note in notes)
    assert SANDBOXED not in log_of(unsandboxed, report)
    assert report.sandboxed is False


def run_inside(sandbox: Sandbox, script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = sandbox.wrap(["/bin/sh", "-c", script], cwd)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_a_writable_directory_inside_a_read_only_one_stays_writable(bwrap: Path, tmp_path: Path) -> None:
    outer, inner = tmp_path / "outer", tmp_path / "outer" / "inner"
    inner.mkdir(parents=True)
    sandbox = Sandbox(bwrap, readable=(outer,), writable=(inner,))
    done = run_inside(sandbox, "touch inner/yes; touch no", outer)
    assert (inner / "yes").exists()
    assert not (outer / "no").exists()
    assert "Read-only file system" in done.stderr


def test_a_path_both_readable_and_writable_is_writable(bwrap: Path, tmp_path: Path) -> None:
    done = run_inside(Sandbox(bwrap, readable=(tmp_path,), writable=(tmp_path,)), "touch both", tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "both").exists()


def test_the_host_and_other_paths_are_out_of_sight(bwrap: Path, tmp_path: Path) -> None:
    seen, hidden = tmp_path / "seen", tmp_path / "hidden"
    seen.mkdir()
    hidden.mkdir()
    (hidden / "secret").write_text("x")
    done = run_inside(Sandbox(bwrap, readable=(), writable=(seen,)), f"cat {hidden}/secret; ls /root", seen)
    assert done.returncode != 0
    assert "No such file or directory" in done.stderr


@pytest.mark.parametrize("network", [True, False])
def test_the_network_is_shared_only_when_asked(bwrap: Path, tmp_path: Path, network: bool) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        probe_script = (
            f"/usr/bin/python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 5)'"
        )
        done = run_inside(Sandbox(bwrap, (), (tmp_path,), network=network), probe_script, tmp_path)
    assert (done.returncode == 0) == network, done.stderr


def test_nested_paths_keep_only_the_outermost(tmp_path: Path) -> None:
    assert nested([tmp_path / "a" / "b", tmp_path / "a", tmp_path / "c", tmp_path / "a"]) == (
        tmp_path / "a",
        tmp_path / "c",
    )


JUNK_ENTRIES = 3000  # enough that evicting them outlasts the go command by far


def test_the_cache_programs_work_after_the_session_is_done_before_the_sandbox_ends(
    bwrap: Path, toolchain: Toolchain, go_env: dict[str, str], tmp_path: Path
) -> None:
    """The sandbox's PID namespace ends with the go command, and every process in it: the cache program's
    gc (here due at once: a 1-byte budget, no minimum age) must be over before the go command is."""
    store_dir = tmp_path / "store"
    store = Store(store_dir, max_size=None)
    for n in range(JUNK_ENTRIES):
        body = f"junk {n}".encode()
        store.put("default", hashlib.sha256(body).digest(), hashlib.sha256(body).digest(), body)
    store.flush_usage()
    module = tmp_path / "lib"
    module.mkdir()
    (module / "go.mod").write_text("module example.test/lib\n\ngo 1.22\n")
    (module / "lib.go").write_text(f'package lib\n\nfunc F() string {{ return "{uuid.uuid4().hex}" }}\n')
    prog = ["--max-size", "1", "--min-age", "0", "--finish-before-close"]
    env = go_env | {"GOCACHEPROG": cacheprog_command(store_dir, extra=prog)}
    writable = [store_dir, module, Path(env["HOME"]), Path(env["TMPDIR"]), Path(env["GOCACHE"])]
    for path in writable:
        path.mkdir(parents=True, exist_ok=True)
    sandbox = Sandbox(bwrap, nested([toolchain.goroot, *python_paths()]), nested(writable))
    done = subprocess.run(
        sandbox.wrap([str(toolchain.go), "build", "./..."], module),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    left = [p for p in (store_dir / "actions" / "default").rglob("*") if p.is_file()]
    assert len(left) <= 1, f"{len(left)} of {JUNK_ENTRIES} entries outlived the go command's gc"


def test_cache_programs_sharing_a_pid_in_their_namespaces_name_temp_files_apart(
    bwrap: Path, tmp_path: Path
) -> None:
    """Each sandboxed go command's cache program has a PID namespace of its own, where they all have the same
    pid: two putting at once must still write different temp files (they once collided: FileExistsError)."""
    store_tmp = tmp_path / "store" / "tmp"
    script = (
        f"import os; from gocaas.cache.files import mktemp; print(os.getpid(), mktemp({str(store_tmp)!r})[1])"
    )
    sandbox = Sandbox(bwrap, readable=nested(python_paths()), writable=(tmp_path,))
    runs = [
        subprocess.run(
            sandbox.wrap([sys.executable, "-I", "-c", script], tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        for _ in range(2)
    ]
    (first_pid, first), (second_pid, second) = (run.stdout.split() for run in runs)
    assert first_pid == second_pid, "one pid in each namespace"
    assert first != second
    assert Path(first).exists() and Path(second).exists()


def test_the_run_only_copy_of_go_is_made_once(toolchain: Toolchain, tmp_path: Path) -> None:
    copy = exec_only(toolchain.go.resolve(), tmp_path / "sandbox")
    assert exec_only(toolchain.go.resolve(), tmp_path / "sandbox") == copy
    assert [p.name for p in (tmp_path / "sandbox").iterdir()] == [copy.name], "no partial copy left"
    assert copy.stat().st_mode & 0o777 == 0o111
    assert copy.stat().st_size == toolchain.go.resolve().stat().st_size
    env = {"GOROOT": str(toolchain.goroot), "HOME": str(tmp_path), "GOTOOLCHAIN": "local"}
    version = subprocess.run([str(copy), "version"], env=env, capture_output=True, text=True, timeout=60)
    assert version.stdout.startswith("go version"), version.stderr


def test_a_data_directory_mounted_noexec_still_builds_in_the_sandbox(
    build: BuildFn,
    settings: Settings,
    fresh_settings,  # type: ignore[no-untyped-def]
    bwrap: Path,
    tmp_path: Path,
) -> None:
    """The run-only copy of go lives in the data directory; where that cannot run programs, go runs from
    its own readable binary (and the build says so in its log) rather than not at all."""
    home = tmp_path / "home"
    home.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "noexec", "tmpfs", str(home)], check=False)
    if mounted.returncode != 0:
        skip_or_fail("mounting a noexec tmpfs needs root")
    try:
        sandboxed = worker(fresh_settings, settings, sandbox="on")
        report = run_test_stages(EXAMPLES / "hello", sandboxed, tmp_path / "out")
        assert report.failure is None, report.failure
        assert report.sandboxed is True
        assert "cannot be executed (noexec?)" in log_of(sandboxed, report)
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)
