"""The `go test -json` parser against the real go, on the small modules in tests/fixtures/gotest."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from gocaas.go.testjson import OUTPUT_LIMIT, PackageRun, TestStreamParser, to_results
from gocaas.report.tests import PackageState
from gocaas.report.tests import TestState as State  # not "Test*": pytest would collect it
from tests.conftest import ROOT, skip_or_fail

FIXTURES = ROOT / "tests" / "fixtures" / "gotest"


@pytest.fixture(scope="session")
def go_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A bare go environment with one GOCACHE for the session, so each fixture compiles std only once."""
    go = shutil.which("go")
    if go is None:
        skip_or_fail("no go on PATH")
    base = tmp_path_factory.mktemp("gotest")
    env = {
        "PATH": f"{Path(str(go)).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(base / "home"),
        "TMPDIR": str(base / "tmp"),
        "GOPATH": str(base / "gopath"),
        "GOCACHE": str(base / "gocache"),
        "GOFLAGS": "-count=1",
        "GOTOOLCHAIN": "local",
        "GOPROXY": "off",
        "GOENV": "off",
        "GOWORK": "off",
        "CGO_ENABLED": "0",
    }
    for name in ("HOME", "TMPDIR"):
        Path(env[name]).mkdir()
    return env


@dataclass
class Parsed:
    runs: list[PackageRun]
    finished_by_feed: list[str]  # packages in the order feed() reported them
    parser: TestStreamParser

    def package(self, suffix: str = "") -> PackageRun:
        (found,) = [run for run in self.runs if run.package.endswith(suffix)]
        return found

    def statuses(self, suffix: str = "") -> dict[str, str]:
        return {test.name: test.status for test in self.package(suffix).tests}


def go_test(
    env: dict[str, str], module: str, *args: str, merge_stderr: bool = False, **extra_env: str
) -> Parsed:
    done = subprocess.run(
        ["go", "test", "-json", *args, "./..."],
        cwd=FIXTURES / module,
        env=env | extra_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
        timeout=300,
        check=False,
    )
    parser = TestStreamParser()
    finished: list[str] = []
    for line in done.stdout.splitlines(keepends=True):
        finished += [run.package for run in parser.feed(line)]
    return Parsed(parser.finish(), finished, parser)


def test_passing_module_with_subtests_skip_and_shuffle_seed(go_env: dict[str, str]) -> None:
    parsed = go_test(go_env, "passing", "-shuffle=on")
    run = parsed.package()
    assert run.package == "example.test/passing"
    assert run.status == "pass"
    assert parsed.finished_by_feed == [run.package]  # reported as it finished, exactly once
    assert parsed.statuses() == {
        "TestAdd": "pass",
        "TestTable": "pass",
        "TestTable/zero": "pass",
        "TestTable/neg": "pass",
        "TestLog": "pass",
        "TestSkipped": "skip",
    }
    assert isinstance(run.shuffle_seed, int)
    assert f"-test.shuffle {run.shuffle_seed}" in run.output
    log = next(test for test in run.tests if test.name == "TestLog")
    assert "hello from TestLog" in log.output
    assert not (run.cached or run.no_test_files or run.build_failed or run.testmain_failed)

    packages, tests = to_results(parsed.runs)
    assert packages[0].state is PackageState.PASSED and packages[0].failure_kind is None
    assert packages[0].shuffle_seed == run.shuffle_seed
    states = {test.name: test.state for test in tests}
    assert states["TestSkipped"] is State.SKIPPED
    assert states["TestTable/neg"] is State.PASSED


def test_no_shuffle_no_seed(go_env: dict[str, str]) -> None:
    assert go_test(go_env, "passing").package().shuffle_seed is None


def test_failing_test_and_subtest(go_env: dict[str, str]) -> None:
    parsed = go_test(go_env, "failing")
    run = parsed.package()
    assert run.status == "fail"
    assert parsed.statuses() == {
        "TestMulByTwo": "pass",
        "TestMulWrong": "fail",
        "TestMulTable": "fail",
        "TestMulTable/ones": "pass",
        "TestMulTable/threes": "fail",
    }
    wrong = next(test for test in run.tests if test.name == "TestMulWrong")
    assert "Mul(3, 4) = 7, want 12" in wrong.output
    assert not run.testmain_failed and run.timed_out_test is None and run.panicked_test is None

    packages, tests = to_results(parsed.runs)
    assert packages[0].failure_kind == "failed"
    assert {t.name: t.failure_kind for t in tests if t.state is State.FAILED} == {
        "TestMulWrong": "failed",
        "TestMulTable": "failed",
        "TestMulTable/threes": "failed",
    }


def test_flaky_test_fails_then_passes(go_env: dict[str, str], tmp_path: Path) -> None:
    tmpdir = {"TMPDIR": str(tmp_path)}  # the marker file lives here: fresh for this test
    first = go_test(go_env, "flaky", **tmpdir)
    second = go_test(go_env, "flaky", **tmpdir)
    assert first.statuses() == {"TestFlaky": "fail", "TestSteady": "pass"}
    assert second.statuses() == {"TestFlaky": "pass", "TestSteady": "pass"}
    flaky = next(test for test in first.package().tests if test.name == "TestFlaky")
    assert "first run fails" in flaky.output


def test_repeated_attempts_in_one_run_are_separate(go_env: dict[str, str], tmp_path: Path) -> None:
    parsed = go_test(go_env, "flaky", "-count=2", "-run=^TestFlaky$", TMPDIR=str(tmp_path))
    assert [(test.name, test.status) for test in parsed.package().tests] == [
        ("TestFlaky", "fail"),
        ("TestFlaky", "pass"),
    ]


def test_timeout_names_the_hanging_test(go_env: dict[str, str]) -> None:
    parsed = go_test(go_env, "hanging", "-timeout=3s")
    run = parsed.package()
    assert run.status == "fail"
    assert run.timed_out and run.timed_out_test == "TestHang"
    # go sends no fail event for the test that hung: the parser fails it.
    assert parsed.statuses() == {"TestQuick": "pass", "TestHang": "fail"}
    hang = next(test for test in run.tests if test.name == "TestHang")
    assert "panic: test timed out after 3s" in hang.output
    assert hang.duration_s > 2
    assert not run.testmain_failed and not run.panicked

    packages, tests = to_results(parsed.runs)
    assert packages[0].failure_kind == "timeout"
    assert {t.name: t.failure_kind for t in tests} == {"TestQuick": None, "TestHang": "timeout"}


def test_panic_in_a_subtest_names_the_top_level_test(go_env: dict[str, str]) -> None:
    parsed = go_test(go_env, "panicking")
    run = parsed.package()
    assert run.status == "fail"
    assert run.panicked and run.panicked_test == "TestBoom"
    statuses = parsed.statuses()
    assert statuses["TestFine"] == "pass"
    assert statuses["TestBoom"] == "fail"
    assert statuses["TestBoom/inner"] == "fail"
    assert "TestAfter" not in statuses  # the binary died before it ran
    boom = next(test for test in run.tests if test.name == "TestBoom")
    assert "assignment to entry in nil map" in boom.output
    assert not run.timed_out and not run.testmain_failed

    packages, tests = to_results(parsed.runs)
    assert packages[0].failure_kind == "panic"
    assert next(t for t in tests if t.name == "TestBoom").failure_kind == "panic"


def test_test_file_that_does_not_compile(go_env: dict[str, str]) -> None:
    parsed = go_test(go_env, "badtest")
    bad, good = parsed.package("/bad"), parsed.package("/good")
    assert bad.status == "fail" and bad.build_failed and bad.tests == []
    assert "bad_test.go:6:17: cannot use Three()" in bad.build_output
    assert "[build failed]" in bad.output
    assert not bad.testmain_failed
    assert good.status == "pass" and not good.build_failed
    assert parsed.statuses("/good") == {"TestTwo": "pass"}
    assert parsed.parser.stray_output == ""

    packages, _ = to_results(parsed.runs)
    by_name = {p.package: p for p in packages}
    assert by_name["example.test/badtest/bad"].failure_kind == "build_failed"
    assert "cannot use Three()" in by_name["example.test/badtest/bad"].output
    assert by_name["example.test/badtest/good"].failure_kind is None


def test_plain_text_build_errors_are_kept(go_env: dict[str, str]) -> None:
    """Before Go 1.24 (and with this GODEBUG) build errors are plain text on stderr, not events."""
    parsed = go_test(go_env, "badtest", merge_stderr=True, GODEBUG="gotestjsonbuildtext=1")
    bad = parsed.package("/bad")
    assert bad.build_failed
    assert "cannot use Three()" in parsed.parser.stray_output
    assert "cannot use Three()" in bad.build_output
    assert parsed.package("/good").status == "pass"


def test_testmain_exit(go_env: dict[str, str]) -> None:
    parsed = go_test(go_env, "testmain")
    run = parsed.package()
    assert run.status == "fail"
    assert run.testmain_failed
    assert parsed.statuses() == {"TestOK": "pass"}
    packages, _ = to_results(parsed.runs)
    assert packages[0].failure_kind == "testmain_exit"


def test_package_without_test_files(go_env: dict[str, str]) -> None:
    parsed = go_test(go_env, "notests")
    lib, tested = parsed.package("/lib"), parsed.package("/tested")
    assert lib.no_test_files and lib.tests == []
    assert not tested.no_test_files
    assert parsed.statuses("/tested") == {"TestFour": "pass"}
    packages, _ = to_results(parsed.runs)
    assert [p.state for p in packages] == [PackageState.NO_TESTS, PackageState.PASSED]


def test_cached_second_run(go_env: dict[str, str]) -> None:
    env = go_env | {"GOFLAGS": ""}  # let go cache test results
    first = go_test(env, "notests")
    second = go_test(env, "notests")
    assert not first.package("/tested").cached
    assert second.package("/tested").cached
    assert second.statuses("/tested") == {"TestFour": "pass"}  # go replays the cached events
    assert to_results(second.runs)[0][1].cached


def test_go_killed_mid_run_closes_packages_as_failed(go_env: dict[str, str]) -> None:
    process = subprocess.Popen(
        ["go", "test", "-json", "-timeout=120s", "./..."],
        cwd=FIXTURES / "hanging",
        env=go_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group: the test binary dies with go
    )
    parser = TestStreamParser()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            assert parser.feed(line) == []
            if '"Action":"run"' in line and '"TestHang"' in line:
                break
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    (run,) = parser.finish()
    assert run.status == "fail"
    assert {t.name: t.status for t in run.tests} == {"TestQuick": "pass", "TestHang": "fail"}
    assert "ended before this package finished" in run.output
    assert not run.testmain_failed and not run.timed_out


def test_lines_that_are_not_events_do_not_crash() -> None:
    parser = TestStreamParser()
    for line in (
        "go: downloading example.test/x v1.0.0",
        "",
        "123",
        "null",
        '["a"]',
        '{"Action": 5}',
        '{"Action": "output", "Output": "no package\\n"}',
        '{"Action":"run","Package":"p","Test":"TestA","Elapsed":"x"}',
        '{"Action":"output","Package":"p","Test":"TestA","Output":"hi\\n"}',
        '{"Action":"pass","Package":"p","Test":"TestA","Elapsed":"nan?"}',
        '{"Action":"out',
    ):
        assert parser.feed(line) == []
    assert parser.feed('{"Action":"pass","Package":"p","Elapsed":0.5}\n')[0].package == "p"
    (run,) = parser.finish()
    assert run.status == "pass" and run.duration_s == 0.5
    assert [(t.name, t.status, t.output) for t in run.tests] == [("TestA", "pass", "hi\n")]
    assert parser.stray_output.splitlines() == [
        "go: downloading example.test/x v1.0.0",
        "123",
        "null",
        '["a"]',
        '{"Action": 5}',
        "no package",
        '{"Action":"out',
    ]


def test_output_is_trimmed_to_its_end() -> None:
    parser = TestStreamParser()
    event = {"Action": "output", "Package": "p", "Test": "TestChatty"}
    parser.feed(json.dumps({"Action": "run", "Package": "p", "Test": "TestChatty"}))
    for i in range(5000):
        parser.feed(json.dumps(event | {"Output": f"line {i:05d} " + "x" * 80 + "\n"}))
    parser.feed(json.dumps({"Action": "fail", "Package": "p", "Test": "TestChatty"}))
    parser.feed(json.dumps({"Action": "fail", "Package": "p"}))
    (run,) = parser.finish()
    output = run.tests[0].output
    assert len(output) <= OUTPUT_LIMIT
    assert output.startswith("[earlier output trimmed]\n")
    assert output.endswith("line 04999 " + "x" * 80 + "\n")
    _, tests = to_results([run])
    assert tests[0].output == output
