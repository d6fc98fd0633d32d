"""`gocaas test` and the test stage of `gocaas build` through the CLI, as a user runs them: the JSON report's
test fields and files under --out, options passed through to go test, quarantine, tiers from settings, and
bad input refused before anything runs."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from gocaas.settings import Settings
from gocaas.spec import TestTier
from tests.conftest import EXAMPLES, ROOT, CliFn, copy_example

GOTEST = ROOT / "tests" / "fixtures" / "gotest"
COVER = ROOT / "tests" / "fixtures" / "cover"


def report_of(proc: Any) -> dict[str, Any]:
    try:
        return json.loads(proc.stdout)  # type: ignore[no-any-return]
    except ValueError:
        pytest.fail(f"no JSON report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def by_name(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for test in report["tests"]["tests"]:
        found.setdefault(test["name"], []).append(test)
    return found


def stage_of(report: dict[str, Any], name: str) -> dict[str, Any]:
    [record] = [s for s in report["stages"] if s["name"] == name]
    return record


def test_json_report_has_the_test_fields_and_files_under_out(cli: CliFn, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = cli("test", str(COVER), "--coverage", "--json", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = report_of(proc)
    assert report["status"] == "succeeded" and report["failure"] is None
    tests = report["tests"]
    summary = tests["summary"]
    assert (summary["total"], summary["passed"], summary["failed"], summary["skipped"], summary["flaky"]) == (
        5, 5, 0, 0, 0,
    )  # fmt: skip
    assert summary["packages_without_tests"] == ["example.test/cover/summary"]
    assert {t["name"] for t in tests["tests"]} == {
        "TestAdd", "TestDiv", "TestReverse", "TestTotal", "TestAverageOfNothing",
    }  # fmt: skip
    assert tests["junit_path"] == str(out / "junit.xml")
    assert ET.parse(tests["junit_path"]).getroot().attrib["tests"] == "5"
    coverage = tests["coverage"]
    assert coverage["profile_path"] == str(out / "coverage.out")
    assert coverage["html_path"] == str(out / "coverage.html")
    assert Path(coverage["profile_path"]).read_text().startswith("mode: set\n")
    assert Path(coverage["html_path"]).is_file()
    assert set(coverage["packages"]) == {
        "example.test/cover/calc", "example.test/cover/summary", "example.test/cover/text",
    }  # fmt: skip
    assert 0 < coverage["total_percent"] < 100
    # `gocaas test` runs no vet, no build and no packaging.
    assert [s["name"] for s in report["stages"]][-1] == "test"
    assert not {"vet", "build", "package"} & {s["name"] for s in report["stages"]}
    assert report["artifacts"] == []


def test_options_pass_through_to_go_test(cli: CliFn, tmp_path: Path) -> None:
    passing = str(GOTEST / "passing")
    proc = cli("test", passing, "--json", "--shuffle", "12345", "--run", "TestAdd$", "--count", "2")
    assert proc.returncode == 0, proc.stderr
    report = report_of(proc)
    assert list(by_name(report)) == ["TestAdd"] and len(by_name(report)["TestAdd"]) == 2
    [package] = report["tests"]["packages"]
    assert package["shuffle_seed"] == 12345 and report["tests"]["shuffle"] == "12345"

    # A -run pattern go's regexp package refuses is the flag's fault, not the code's (was "testmain_failed").
    proc = cli("test", passing, "--json", "--run", "[")
    assert proc.returncode == 2, proc.stderr
    failure = report_of(proc)["failure"]
    assert failure["kind"] == "bad_flag" and "invalid regexp" in failure["message"], failure

    proc = cli("test", passing, "--json", "--shuffle", "off")
    assert proc.returncode == 0, proc.stderr
    [package] = report_of(proc)["tests"]["packages"]
    assert package["shuffle_seed"] is None

    proc = cli("test", str(GOTEST / "failing"), "--json", "--reruns", "1")
    assert proc.returncode == 1, proc.stderr
    report = report_of(proc)
    assert report["failure"]["kind"] == "test_failed"
    assert by_name(report)["TestMulWrong"][0]["attempts"] == 2

    proc = cli("test", str(GOTEST / "failing"), "--json", "--rerun-threshold", "0")
    report = report_of(proc)
    assert by_name(report)["TestMulWrong"][0]["attempts"] == 1
    assert any("not re-run" in note for note in stage_of(report, "test")["notes"])


def test_flaky_policy_from_the_command_line(cli: CliFn) -> None:
    proc = cli("test", str(GOTEST / "flaky"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert report_of(proc)["tests"]["summary"]["flaky"] == 1
    proc = cli("test", str(GOTEST / "flaky"), "--json", "--flaky", "fail")
    assert proc.returncode == 1, proc.stderr
    assert report_of(proc)["failure"]["kind"] == "flaky_test"


def test_test_timeout_from_the_command_line(cli: CliFn) -> None:
    proc = cli("test", str(GOTEST / "hanging"), "--json", "--test-timeout", "3")
    assert proc.returncode == 1, proc.stderr
    report = report_of(proc)
    assert report["failure"]["kind"] == "test_timeout" and "TestHang" in report["failure"]["message"]
    assert by_name(report)["TestHang"][0]["attempts"] == 1


@pytest.mark.parametrize(
    ("command", "args", "option", "value"),
    [
        ("test", ["--run", "-toolexec=x"], "run", "-toolexec=x"),
        ("build", ["--run", "-toolexec=x"], "run", "-toolexec=x"),
        ("test", ["--shuffle", "on -x"], "shuffle", "on -x"),
        ("test", ["--shuffle", "99999999999999999999"], "shuffle", "99999999999999999999"),  # past int64
        ("test", ["--tier", "../x"], "tier", "../x"),
        ("test", ["--flaky", "maybe"], "flaky", None),
        ("test", ["--count", "0"], "--count", None),
        ("build", ["--count", "0"], "--count", None),
    ],
)
def test_bad_option_values_are_refused(
    cli: CliFn, command: str, args: list[str], option: str, value: str | None, settings: Settings
) -> None:
    builds = set(settings.builds_dir.iterdir()) if settings.builds_dir.is_dir() else set()
    proc = cli(command, str(GOTEST / "passing"), *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert option in proc.stderr, proc.stderr
    if value is not None:
        assert value in proc.stderr
    assert "Traceback" not in proc.stderr
    # Refused before any build started.
    assert (set(settings.builds_dir.iterdir()) if settings.builds_dir.is_dir() else set()) == builds


@pytest.mark.parametrize(
    ("args", "value"),
    [
        (["--run", "-toolexec=x"], "-toolexec=x"),
        (["--shuffle", "on -x"], "on -x"),
        (["--tier", "../x"], "../x"),
    ],
)
def test_bad_option_values_with_json_answer_json(cli: CliFn, args: list[str], value: str) -> None:
    proc = cli("test", str(GOTEST / "passing"), "--json", *args)
    assert proc.returncode == 2
    failure = report_of(proc)["failure"]
    assert failure["kind"] == "bad_input" and value in failure["message"]


# --- quarantine -----------------------------------------------------------------------------------------


@pytest.fixture
def failing(tmp_path: Path) -> Path:
    module = tmp_path / "failing"
    shutil.copytree(GOTEST / "failing", module)
    return module


def test_quarantined_failures_do_not_fail_the_build(cli: CliFn, failing: Path, tmp_path: Path) -> None:
    proc = cli("quarantine", "add", "TestMulWrong", "--dir", str(failing))
    assert proc.returncode == 0, proc.stderr
    proc = cli(
        "quarantine", "add", "TestMulTable", "--package", "example.test/failing", "--dir", str(failing)
    )
    assert proc.returncode == 0, proc.stderr
    listed = cli("quarantine", "list", "--dir", str(failing))
    assert listed.stdout.splitlines() == ["TestMulWrong", "example.test/failing TestMulTable"]

    out = tmp_path / "out"
    proc = cli("test", str(failing), "--json", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = report_of(proc)
    assert report["status"] == "succeeded" and report["failure"] is None
    summary = report["tests"]["summary"]
    assert summary["failed"] == 3 and summary["quarantined_failures"] == 3
    assert all(t["quarantined"] for t in summary["failures"])

    root = ET.parse(out / "junit.xml").getroot()
    failures = {
        case.attrib["name"]: case.find("failure")
        for case in root.iter("testcase")
        if case.find("failure") is not None
    }
    assert set(failures) == {"TestMulWrong", "TestMulTable", "TestMulTable/threes"}
    assert {f.attrib["type"] for f in failures.values() if f is not None} == {"quarantined"}
    case = next(c for c in root.iter("testcase") if c.attrib["name"] == "TestMulWrong")
    assert {p.attrib["name"]: p.attrib["value"] for p in case.iter("property")} == {"quarantined": "true"}

    # Without --json the summary still shows them, marked.
    proc = cli("test", str(failing))
    assert proc.returncode == 0
    assert "quarantined" in proc.stdout + proc.stderr


def test_only_the_quarantined_test_is_forgiven(cli: CliFn, failing: Path) -> None:
    assert cli("quarantine", "add", "TestMulWrong", "-C", str(failing)).returncode == 0
    proc = cli("test", str(failing), "--json")
    assert proc.returncode == 1, proc.stderr
    report = report_of(proc)
    assert report["failure"]["kind"] == "test_failed"
    assert (
        "TestMulTable" in report["failure"]["message"] and "TestMulWrong" not in report["failure"]["message"]
    )
    assert report["tests"]["summary"]["quarantined_failures"] == 1

    # Released, it fails the build again.
    assert cli("quarantine", "remove", "TestMulWrong", "-C", str(failing)).returncode == 0
    assert cli("quarantine", "list", "-C", str(failing)).stdout.strip() == ""
    proc = cli("test", str(failing), "--json")
    assert "TestMulWrong" in report_of(proc)["failure"]["message"]


def test_quarantine_of_another_package_does_not_match(cli: CliFn, failing: Path) -> None:
    proc = cli("quarantine", "add", "TestMulWrong", "--package", "example.test/other", "-C", str(failing))
    assert proc.returncode == 0, proc.stderr
    proc = cli("test", str(failing), "--json", "--reruns", "0")
    assert proc.returncode == 1
    assert report_of(proc)["tests"]["summary"]["quarantined_failures"] == 0


# --- tiers from settings --------------------------------------------------------------------------------


@pytest.fixture
def tiered(settings: Settings) -> Settings:
    tiers = (TestTier(name="unit"), TestTier(name="integration", tags=("integration",), default=False))
    return settings.model_copy(update={"test_tiers": tiers})


def test_tiers_from_settings(cli: CliFn, tiered: Settings) -> None:
    source = str(GOTEST / "tiers")
    proc = cli("test", source, "--json", settings_=tiered)
    assert proc.returncode == 0, proc.stderr
    assert set(by_name(report_of(proc))) == {"TestDouble"}

    proc = cli("test", source, "--json", "--tier", "integration", settings_=tiered)
    assert proc.returncode == 0, proc.stderr
    assert set(by_name(report_of(proc))) == {"TestDouble", "TestDoubleIntegration"}

    proc = cli("test", source, "--tier", "e2e", settings_=tiered)
    assert proc.returncode == 2
    assert "e2e" in proc.stdout + proc.stderr


# --- --changed-since ------------------------------------------------------------------------------------


def test_changed_since_needs_a_git_checkout(cli: CliFn, tmp_path: Path) -> None:
    module = tmp_path / "passing"  # under the pytest temporary directory, outside any repository
    shutil.copytree(GOTEST / "passing", module)
    proc = cli("test", str(module), "--changed-since", "HEAD", "--json")
    assert proc.returncode == 2
    assert "git" in report_of(proc)["failure"]["message"]


# --- gocaas build ---------------------------------------------------------------------------------------


def test_build_runs_the_tests(cli: CliFn, tmp_path: Path) -> None:
    out = tmp_path / "dist"
    proc = cli("build", str(EXAMPLES / "multi"), "--json", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = report_of(proc)
    names = [s["name"] for s in report["stages"]]
    assert names.index("vet") < names.index("test") < names.index("build")
    assert stage_of(report, "test")["status"] == "ok"
    tests = report["tests"]
    assert tests is not None
    assert set(by_name(report)) == {"TestFor", "TestLoud"}
    assert sorted(tests["summary"]["packages_without_tests"]) == [
        "example.com/multi/cmd/greet", "example.com/multi/cmd/shout",
    ]  # fmt: skip
    assert tests["junit_path"] == str(out / "junit.xml") and (out / "junit.xml").is_file()
    binaries = sorted(a["name"].split("_", 1)[0] for a in report["artifacts"] if a["kind"] == "binary")
    assert binaries == ["greet", "shout"]


def test_build_with_a_failing_test_builds_nothing(cli: CliFn, tmp_path: Path) -> None:
    module = copy_example("multi", tmp_path / "multi")
    (module / "greeting" / "broken_test.go").write_text(
        'package greeting\n\nimport "testing"\n\nfunc TestBroken(t *testing.T) { t.Fatal("broken") }\n'
    )
    out = tmp_path / "dist"
    proc = cli("build", str(module), "--json", "--out", str(out), "--reruns", "0")
    assert proc.returncode == 1, proc.stderr
    report = report_of(proc)
    assert report["failure"]["stage"] == "test" and report["failure"]["kind"] == "test_failed"
    assert "TestBroken" in report["failure"]["message"]
    assert stage_of(report, "build")["status"] == "skipped"
    assert report["artifacts"] == []
    assert report["tests"]["summary"]["failed"] == 1  # the report of the failed stage is kept

    # --no-test skips the stage, with the reason, and the build goes on.
    proc = cli("build", str(module), "--json", "--out", str(out), "--no-test")
    assert proc.returncode == 0, proc.stderr
    report = report_of(proc)
    record = stage_of(report, "test")
    assert record["status"] == "skipped" and "--no-test" in record["skip_reason"]
    assert report["tests"] is None
    assert stage_of(report, "build")["status"] == "ok" and report["artifacts"]
