"""The quarantine list (.gocaas/quarantine): parsing, matching, writing back, the `gocaas quarantine`
commands, and a malformed file refused as bad input naming its line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gocaas.errors import BadInput
from gocaas.quarantine import QUARANTINE_FILE, Entry, Quarantine, load, parse_entry, save
from tests.conftest import ROOT, CliFn

FAILING = ROOT / "tests" / "fixtures" / "gotest" / "failing"


def write(root: Path, text: str) -> Path:
    path = root / QUARANTINE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return root


def test_no_file_is_an_empty_quarantine(tmp_path: Path) -> None:
    assert load(tmp_path) == Quarantine()
    assert not load(tmp_path).matches("example.com/m", "TestX")


def test_parses_names_packages_subtests_comments_and_blank_lines(tmp_path: Path) -> None:
    write(
        tmp_path,
        "# known flaky tests\n"
        "\n"
        "TestSometimesSlow                         # in any package\n"
        "   example.com/m/store   TestRetryRace   \n"
        "example.com/m/api TestServer/under_load   # one subtest\n"
        "\t# an indented comment\n"
        "FuzzParse\n"
        "ExampleHello\r\n",
    )
    assert load(tmp_path).entries == (
        Entry(None, "TestSometimesSlow"),
        Entry("example.com/m/store", "TestRetryRace"),
        Entry("example.com/m/api", "TestServer/under_load"),
        Entry(None, "FuzzParse"),
        Entry(None, "ExampleHello"),
    )


@pytest.mark.parametrize(
    ("entry", "package", "name", "matches"),
    [
        (Entry(None, "TestX"), "example.com/a", "TestX", True),
        (Entry(None, "TestX"), "example.com/b", "TestX", True),  # any package
        (Entry(None, "TestX"), "example.com/a", "TestX/sub", True),  # and its subtests
        (Entry(None, "TestX"), "example.com/a", "TestX/sub/deeper", True),
        (Entry(None, "TestX"), "example.com/a", "TestXY", False),  # not a name prefix
        (Entry(None, "TestX"), "example.com/a", "TestY", False),
        (Entry("example.com/a", "TestX"), "example.com/a", "TestX", True),
        (Entry("example.com/a", "TestX"), "example.com/a/sub", "TestX", False),  # only that package
        (Entry("example.com/a", "TestX"), "example.com/ab", "TestX", False),
        (Entry(None, "TestX/one"), "example.com/a", "TestX/one", True),
        (Entry(None, "TestX/one"), "example.com/a", "TestX/one/two", True),
        (Entry(None, "TestX/one"), "example.com/a", "TestX", False),  # a subtest does not cover its parent
        (Entry(None, "TestX/one"), "example.com/a", "TestX/other", False),
        (Entry(None, "TestX/one"), "example.com/a", "TestX/oneteen", False),
    ],
)
def test_matching(entry: Entry, package: str, name: str, matches: bool) -> None:
    assert entry.matches(package, name) is matches
    assert Quarantine((entry,)).matches(package, name) is matches


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("TestOK\nnot_a_test\n", 2, "not_a_test"),
        ("# header\n\nexample.com/m TestX extra\n", 3, "expected"),
        ("example.com/m test_lower\n", 1, "test_lower"),
        ("exa$mple.com/m TestX\n", 1, "exa$mple.com/m"),
        ("TestX/\n", 1, "TestX/"),
        ("Test X\n", 1, "'X'"),  # read as package "Test" and test "X"
        ("-run=TestX\n", 1, "-run=TestX"),
    ],
)
def test_malformed_line_is_bad_input_naming_it(tmp_path: Path, text: str, line: int, words: str) -> None:
    write(tmp_path, text)
    with pytest.raises(BadInput) as raised:
        load(tmp_path)
    message = raised.value.message
    assert f".gocaas/quarantine:{line}:" in message, message
    assert words in message, message


@pytest.mark.parametrize("name", ["TestX", "TestX/sub", "TestX/a/b", "Test", "Test_x", "FuzzY", "ExampleZ"])
def test_parse_entry_accepts_go_test_names(name: str) -> None:
    assert parse_entry(None, name) == Entry(None, name)
    assert parse_entry("example.com/m/v2", name) == Entry("example.com/m/v2", name)


@pytest.mark.parametrize(
    "name", ["", "X", "testX", "BenchmarkX", "TestX Y", "TestX/sub#1", "TestX/a b", "-TestX"]
)
def test_parse_entry_refuses_anything_else(name: str) -> None:
    with pytest.raises(BadInput) as raised:
        parse_entry(None, name, "here")
    assert raised.value.message.startswith("here: ")


@pytest.mark.parametrize(
    "package",
    ["", "example.com/m pkg", "example.com//m", "/abs", "example.com/m/", "a\nb", "../../etc", "a/./b"],
)
def test_parse_entry_refuses_a_bad_package(package: str) -> None:
    with pytest.raises(BadInput):
        parse_entry(package, "TestX")


def test_save_then_load_round_trips_sorted_and_deduplicated(tmp_path: Path) -> None:
    entries = (
        Entry("example.com/m/store", "TestRetryRace"),
        Entry(None, "TestB"),
        Entry(None, "TestA/sub"),
        Entry(None, "TestB"),
    )
    path = save(tmp_path, Quarantine(entries))
    assert path == tmp_path / ".gocaas" / "quarantine"
    text = path.read_text()
    assert text.startswith("#")  # a header saying what the file is
    body = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert body == ["TestA/sub", "TestB", "example.com/m/store TestRetryRace"]
    assert set(load(tmp_path).entries) == set(entries) and len(load(tmp_path).entries) == 3
    assert [p.name for p in path.parent.iterdir()] == ["quarantine"]  # no temporary file left


def test_save_keeps_what_load_read(tmp_path: Path) -> None:
    write(tmp_path, "TestZ # why\nexample.com/m TestA\n")
    save(tmp_path, load(tmp_path))
    assert load(tmp_path).entries == (Entry(None, "TestZ"), Entry("example.com/m", "TestA"))


# --- gocaas quarantine ----------------------------------------------------------------------------------


@pytest.fixture
def module(tmp_path: Path) -> Path:
    dest = tmp_path / "failing"
    shutil.copytree(FAILING, dest)
    return dest


def test_cli_add_list_remove(cli: CliFn, module: Path) -> None:
    proc = cli("quarantine", "add", "TestMulWrong", "--dir", str(module))
    assert proc.returncode == 0, proc.stderr
    assert "TestMulWrong" in proc.stdout
    proc = cli("quarantine", "add", "TestMulTable/threes", "-p", "example.test/failing", "-C", str(module))
    assert proc.returncode == 0, proc.stderr
    proc = cli("quarantine", "add", "TestMulWrong", "--dir", str(module))  # again: still once
    assert proc.returncode == 0, proc.stderr
    assert load(module).entries == (
        Entry(None, "TestMulWrong"),
        Entry("example.test/failing", "TestMulTable/threes"),
    )
    listed = cli("quarantine", "list", "--dir", str(module))
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == ["TestMulWrong", "example.test/failing TestMulTable/threes"]

    proc = cli("quarantine", "remove", "TestMulWrong", "--dir", str(module))
    assert proc.returncode == 0, proc.stderr
    assert load(module).entries == (Entry("example.test/failing", "TestMulTable/threes"),)
    # A package-scoped entry is removed by naming its package.
    proc = cli("quarantine", "remove", "TestMulTable/threes", "--dir", str(module))
    assert proc.returncode == 2 and "not in quarantine" in proc.stderr
    proc = cli("quarantine", "remove", "TestMulTable/threes", "-p", "example.test/failing", "-C", str(module))
    assert proc.returncode == 0, proc.stderr
    assert load(module).entries == ()


def test_cli_refuses_bad_input(cli: CliFn, module: Path, tmp_path: Path) -> None:
    proc = cli("quarantine", "add", "not a test", "--dir", str(module))
    assert proc.returncode == 2 and "'not a test'" in proc.stderr
    proc = cli("quarantine", "add", "TestX", "--package", "bad pkg", "--dir", str(module))
    assert proc.returncode == 2 and "'bad pkg'" in proc.stderr
    assert not (module / QUARANTINE_FILE).exists()  # nothing written
    (tmp_path / "empty").mkdir()
    proc = cli("quarantine", "list", "--dir", str(tmp_path / "empty"))
    assert proc.returncode == 2 and "go.mod" in proc.stderr
    proc = cli("quarantine", "remove", "TestNope", "--dir", str(module))
    assert proc.returncode == 2 and "TestNope" in proc.stderr
    write(module, "TestOK\nTestX extra words\n")
    proc = cli("quarantine", "list", "--dir", str(module))
    assert proc.returncode == 2 and ".gocaas/quarantine:2" in proc.stderr
    proc = cli("quarantine", "add", "TestY", "--dir", str(module))  # never rewrites a file it cannot read
    assert proc.returncode == 2
    assert (module / QUARANTINE_FILE).read_text() == "TestOK\nTestX extra words\n"


def test_malformed_quarantine_file_fails_the_build_as_bad_input(cli: CliFn, module: Path) -> None:
    write(module, "TestMulWrong\n\nexample.test/failing TestMulTable trailing\n")
    proc = cli("test", str(module), "--json")
    assert proc.returncode == 2
    failure = json.loads(proc.stdout)["failure"]
    assert (failure["class"], failure["kind"], failure["stage"]) == ("user", "bad_input", "test")
    assert ".gocaas/quarantine:3" in failure["message"]


def test_a_quarantine_path_that_is_not_a_file_is_bad_input_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / ".gocaas").write_text("a file where the directory goes")
    with pytest.raises(BadInput, match="not a file"):
        load(tmp_path)
    with pytest.raises(BadInput, match="cannot write"):
        save(tmp_path, Quarantine((parse_entry(None, "TestX"),)))
    other = tmp_path / "other"
    (other / QUARANTINE_FILE).mkdir(parents=True)  # a directory where the list goes
    with pytest.raises(BadInput, match="not a file"):
        load(other)
    with pytest.raises(BadInput, match="cannot write"):
        save(other, Quarantine((parse_entry(None, "TestX"),)))
    assert sorted(p.name for p in (other / ".gocaas").iterdir()) == ["quarantine"]  # no stray .tmp
