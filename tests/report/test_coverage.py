"""Cover profiles from the real `go test` on tests/fixtures/cover: our percentages against `go tool cover
-func` and `go test`'s own summary, merging runs, writing profiles, and the HTML view."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from gocaas.errors import InfraError
from gocaas.go.toolchain import Toolchain
from gocaas.report.coverage import (
    Block,
    Profile,
    Tally,
    coverage_percentages,
    format_profile,
    merge_profiles,
    parse_profile,
    render_html,
    write_profile,
)
from tests.conftest import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "cover"
MODULE = "example.test/cover"
PACKAGES = [f"{MODULE}/calc", f"{MODULE}/summary", f"{MODULE}/text"]
_FUNC_TOTAL_RE = re.compile(r"^total:\s+\(statements\)\s+([\d.]+)%$", re.MULTILINE)
_GO_TEST_COVER_RE = re.compile(r"^(?:ok\s+)?\s*(\S+)\s.*coverage: ([\d.]+)% of statements$", re.MULTILINE)




@dataclass(frozen=True)
class Runs:
    module: Path
    plain: Path  # go test -coverprofile ./...
    plain_stdout: str
    coverpkg: Path  # -covermode=count -coverpkg=./... ./...
    calc_only: Path  # the same, ./calc alone
    others: Path  # the same, ./text ./summary


@pytest.fixture(scope="module")
def runs(toolchain: Toolchain, go_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Runs:
    scratch = tmp_path_factory.mktemp("cover")
    module = scratch / "module"
    shutil.copytree(FIXTURE, module)

    def go_test(name: str, *args: str) -> tuple[Path, str]:
        out = scratch / f"{name}.out"
        done = go(toolchain, go_env, module, "test", f"-coverprofile={out}", *args)
        return out, done.stdout

    plain, plain_stdout = go_test("plain", "./...")
    count = ("-covermode=count", "-coverpkg=./...")
    coverpkg, _ = go_test("coverpkg", *count, "./...")
    calc_only, _ = go_test("calc", *count, "./calc")
    others, _ = go_test("others", *count, "./text", "./summary")
    return Runs(module, plain, plain_stdout, coverpkg, calc_only, others)


def go(toolchain: Toolchain, env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(toolchain.go), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"go {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def func_total(toolchain: Toolchain, env: dict[str, str], module: Path, profile: Path) -> float:
    """What `go tool cover -func` prints as the total."""
    out = go(toolchain, env, module, "tool", "cover", f"-func={profile}").stdout
    match = _FUNC_TOTAL_RE.search(out)
    assert match, out
    return float(match.group(1))


def read(path: Path) -> Profile:
    return parse_profile(path.read_text())


@pytest.mark.parametrize("which", ["plain", "coverpkg"])
def test_percentages_match_go_tool_cover_func(
    which: str, runs: Runs, toolchain: Toolchain, go_env: dict[str, str], tmp_path: Path
) -> None:
    path: Path = getattr(runs, which)
    total, packages = coverage_percentages(read(path))
    assert total == func_total(toolchain, go_env, runs.module, path)
    assert sorted(packages) == PACKAGES
    # Per package: -func's total over the profile's lines of that package alone.
    lines = path.read_text().splitlines()
    for package, percent in packages.items():
        part = tmp_path / f"{package.rsplit('/', 1)[1]}.out"
        part.write_text(
            "\n".join([lines[0], *(ln for ln in lines[1:] if ln.startswith(package + "/"))]) + "\n"
        )
        assert percent == func_total(toolchain, go_env, runs.module, part), package
    assert 0 < total < 100  # the fixture is partly covered, or this test proves little


def test_plain_run_matches_go_test_summary(runs: Runs) -> None:
    printed = {pkg: float(pct) for pkg, pct in _GO_TEST_COVER_RE.findall(runs.plain_stdout)}
    assert printed == coverage_percentages(read(runs.plain))[1]
    assert printed[f"{MODULE}/summary"] == 0.0  # no tests of its own, still reported


def test_coverpkg_counts_code_run_from_other_packages_tests(runs: Runs) -> None:
    _, plain = coverage_percentages(read(runs.plain))
    _, wide = coverage_percentages(read(runs.coverpkg))
    assert wide[f"{MODULE}/calc"] > plain[f"{MODULE}/calc"]  # text's tests run calc.Div's error branch
    assert read(runs.coverpkg).mode == "count"


def test_merging_separate_runs_equals_one_combined_run(runs: Runs, tmp_path: Path) -> None:
    combined = read(runs.coverpkg)
    merged = merge_profiles([read(runs.calc_only), read(runs.others)])
    assert coverage_percentages(merged) == coverage_percentages(combined)
    assert merged.blocks == combined.blocks  # counts summed, not just covered/uncovered
    assert max(t.count for t in merged.blocks.values()) > 1
    write_profile(merged, tmp_path / "merged.out")
    write_profile(combined, tmp_path / "combined.out")
    assert (tmp_path / "merged.out").read_bytes() == (tmp_path / "combined.out").read_bytes()


def test_written_profile_is_sorted_and_read_by_go(
    runs: Runs, toolchain: Toolchain, go_env: dict[str, str], tmp_path: Path
) -> None:
    text = runs.coverpkg.read_text()
    mode, *blocks = text.splitlines()
    shuffled = "\n".join([mode, *reversed(blocks)]) + "\n"
    dest = tmp_path / "written.out"
    write_profile(parse_profile(shuffled), dest)
    assert dest.read_text() == format_profile(parse_profile(text))
    body = dest.read_text().splitlines()[1:]
    assert len(body) == len(set(body)) < len(blocks)  # every package's blocks came once per test binary
    assert func_total(toolchain, go_env, runs.module, dest) == coverage_percentages(read(runs.coverpkg))[0]


def test_render_html(runs: Runs, toolchain: Toolchain, go_env: dict[str, str], tmp_path: Path) -> None:
    dest = tmp_path / "coverage.html"
    render_html(toolchain.go, go_env, runs.module, runs.plain, dest, timeout=300)
    html = dest.read_text()
    assert "calc.go" in html and "ErrDivByZero" in html


def test_render_html_failure_is_infra_error(
    runs: Runs, toolchain: Toolchain, go_env: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(InfraError, match="go tool cover -html failed"):
        render_html(toolchain.go, go_env, runs.module, tmp_path / "missing.out", tmp_path / "x.html", 300)


# --- the profile format on its own ----------------------------------------------------------------------

SET_A = "mode: set\nm/p/a.go:1.1,2.2 2 1\nm/p/a.go:3.1,4.2 1 0\nm/q/b.go:1.1,2.2 3 0\n"
SET_B = "mode: set\nm/p/a.go:1.1,2.2 2 1\nm/p/a.go:3.1,4.2 1 1\n"


def test_set_mode_merges_with_or() -> None:
    merged = merge_profiles([parse_profile(SET_A), parse_profile(SET_B)])
    assert merged.blocks[Block("m/p/a.go", 1, 1, 2, 2)] == Tally(2, 1)
    assert merged.blocks[Block("m/p/a.go", 3, 1, 4, 2)] == Tally(1, 1)
    assert coverage_percentages(merged) == (50.0, {"m/p": 100.0, "m/q": 0.0})


def test_count_mode_sums_and_repeated_blocks_merge_on_read() -> None:
    text = "mode: atomic\nm/a.go:1.1,2.2 1 2\nmode: atomic\nm/a.go:1.1,2.2 1 3\n"
    assert parse_profile(text).blocks == {Block("m/a.go", 1, 1, 2, 2): Tally(1, 5)}


def test_mismatched_modes_refused() -> None:
    with pytest.raises(ValueError, match="different modes: count, set"):
        merge_profiles([parse_profile(SET_A), parse_profile("mode: count\n")])
    with pytest.raises(ValueError, match="mode 'count' after mode 'set'"):
        parse_profile(SET_A + "mode: count\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("m/a.go:1.1,2.2 1 1\n", "expected 'mode"),
        ("mode: sometimes\n", "unknown mode"),
        ("mode: set\nm/a.go:1.1,2.2 1\n", "line 2: not a block"),
        ("mode: set\nm/a.go:1.1,2.2 1 1\nm/a.go:1.1,2.2 2 1\n", "1 statements in one report and 2"),
    ],
)
def test_bad_profiles_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_profile(text)


def test_no_statements_is_zero_percent() -> None:
    assert coverage_percentages(parse_profile("mode: set\n")) == (0.0, {})


def test_file_names_with_colons() -> None:
    profile = parse_profile("mode: set\nC:/m/a.go:1.1,2.2 1 1\n")
    assert list(profile.blocks) == [Block("C:/m/a.go", 1, 1, 2, 2)]
