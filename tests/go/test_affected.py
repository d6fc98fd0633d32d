"""`--changed-since` selection against real git and the real `go list -e -deps -test -json ./...`: a module
of three packages, a <- b <- c (b imports a, c imports b), with a file embedded in a and testdata in b."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from gocaas.go.affected import affected_packages, go_list_args, parse_go_list_json
from gocaas.go.toolchain import Toolchain
from gocaas.settings import Settings
from gocaas.source.changes import changed_files
from tests.source.builders import git

MODULE = "example.test/aff"
A, B, C = (f"{MODULE}/{name}" for name in "abc")
FILES = {
    "go.mod": f"module {MODULE}\n\ngo 1.21\n",
    "a/a.go": 'package a\n\nimport _ "embed"\n\n//go:embed hello.txt\nvar Hello string\n\n'
    "func A() string { return Hello }\n",
    "a/hello.txt": "hello\n",
    "a/extra.go": "package a\n\nconst Extra = 1\n",
    "a/a_test.go": 'package a\n\nimport "testing"\n\nfunc TestA(t *testing.T) { _ = A() }\n',
    "b/b.go": 'package b\n\nimport "example.test/aff/a"\n\nfunc B() string { return a.A() + "b" }\n',
    "b/b_test.go": 'package b\n\nimport (\n\t"os"\n\t"testing"\n)\n\n'
    'func TestB(t *testing.T) {\n\tif _, err := os.ReadFile("testdata/in.txt"); err != nil {\n'
    "\t\tt.Fatal(err)\n\t}\n}\n",
    "b/testdata/in.txt": "input\n",
    "c/c.go": 'package c\n\nimport "example.test/aff/b"\n\nfunc C() string { return b.B() + "c" }\n',
    "c/c_test.go": 'package c_test\n\nimport (\n\t"testing"\n\n\t"example.test/aff/c"\n)\n\n'
    "func TestC(t *testing.T) { _ = c.C() }\n",
    "README.md": "not Go\n",
    ".gitignore": "*.log\n",
}




@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("affected") / "repo"
    for name, text in FILES.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


@pytest.fixture
def repo(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "repo", symlinks=True))


Select = Callable[..., tuple[list[str], dict[str, str]]]


@pytest.fixture
def select(repo: Path, toolchain: Toolchain, go_env: dict[str, str], settings: Settings) -> Select:
    """changed_files + go list + affected_packages, as the test stage chains them."""

    def run(since: str = "HEAD", log: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
        changed = changed_files(repo, since, repo, settings)
        listed = subprocess.run(
            [str(toolchain.go), *go_list_args()],
            cwd=repo, env=go_env, capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        packages = parse_go_list_json(listed.stdout)
        sink = log.append if log is not None else None
        return affected_packages(packages, changed, MODULE, repo, since=since, log=sink)

    return run


def edit(repo: Path, name: str, text: str = "\n// edited\n") -> None:
    with (repo / name).open("a") as handle:
        handle.write(text)


def test_change_in_a_runs_its_dependents(repo: Path, select: Select) -> None:
    edit(repo, "a/a.go")
    log: list[str] = []
    assert select(log=log) == ([A, B, C], {})
    assert f"{A}: a/a.go changed" in log
    assert f"{C}: depends on {A}, where a/a.go changed" in log


def test_change_in_c_only_runs_c(repo: Path, select: Select) -> None:
    edit(repo, "c/c.go")
    run, skipped = select()
    assert run == [C]
    assert skipped == {
        A: "no change in its files or its dependencies since HEAD",
        B: "no change in its files or its dependencies since HEAD",
    }


def test_embedded_file_change_runs_package_and_dependents(repo: Path, select: Select) -> None:
    edit(repo, "a/hello.txt", "changed\n")
    assert select()[0] == [A, B, C]


def test_testdata_change_runs_only_that_package(repo: Path, select: Select) -> None:
    edit(repo, "b/testdata/in.txt", "changed\n")
    assert select()[0] == [B]


def test_test_file_change_does_not_reach_dependents(repo: Path, select: Select) -> None:
    edit(repo, "b/b_test.go")
    assert select()[0] == [B]


def test_xtest_import_counts_as_a_dependency(repo: Path, select: Select) -> None:
    # b's tests now import c, so c's change reaches b through b's test binary only.
    (repo / "b" / "c_user_test.go").write_text(
        'package b_test\n\nimport (\n\t"testing"\n\n\t"example.test/aff/c"\n)\n\n'
        "func TestUsesC(t *testing.T) { _ = c.C() }\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "b tests use c")
    edit(repo, "c/c.go")
    assert select()[0] == [B, C]


def test_go_mod_change_runs_everything(repo: Path, select: Select) -> None:
    edit(repo, "go.mod", "\n// edited\n")
    log: list[str] = []
    assert select(log=log) == ([A, B, C], {})
    assert log == ["go.mod changed since HEAD: every package is affected"]


def test_no_change_runs_nothing(repo: Path, select: Select) -> None:
    edit(repo, "README.md")  # belongs to no package
    (repo / "debug.log").write_text("ignored by .gitignore\n")
    run, skipped = select()
    assert run == []
    assert sorted(skipped) == [A, B, C]


def test_untracked_new_file_runs_its_package(repo: Path, select: Select) -> None:
    (repo / "c" / "more.go").write_text("package c\n\nconst More = 1\n")
    assert select()[0] == [C]


def test_deleted_file_runs_package_and_dependents(repo: Path, select: Select) -> None:
    (repo / "a" / "extra.go").unlink()
    assert select()[0] == [A, B, C]


def test_committed_change_since_an_older_ref(repo: Path, select: Select) -> None:
    edit(repo, "b/b.go")
    git(repo, "commit", "-q", "-am", "change b")
    assert select("HEAD")[0] == []
    assert select("HEAD~1")[0] == [B, C]


# --- go list's stream, and the test variants in it -------------------------------------------------------


def test_parse_go_list_json_reads_concatenated_objects() -> None:
    text = json.dumps({"ImportPath": "x"}, indent="\t") + "\n" + json.dumps({"ImportPath": "y"}) + "\n"
    assert [p["ImportPath"] for p in parse_go_list_json(text)] == ["x", "y"]
    assert parse_go_list_json("  \n") == []
    with pytest.raises(ValueError, match="invalid JSON"):
        parse_go_list_json('{"ImportPath": "x"}{')
    with pytest.raises(ValueError, match="not an object"):
        parse_go_list_json("[]")


def test_a_package_whose_path_ends_in_dot_test_is_not_a_test_main(tmp_path: Path) -> None:
    module = {"Path": "example.test", "Main": True}
    packages = [
        {"ImportPath": "example.test", "Name": "root", "Dir": str(tmp_path), "GoFiles": ["r.go"],
         "Module": module},
        {"ImportPath": "other.test/x", "Name": "x", "Dir": "/elsewhere", "GoFiles": ["x.go"],
         "Module": {"Path": "other.test"}},
    ]  # fmt: skip
    assert affected_packages(packages, ["r.go"], "example.test", tmp_path) == (["example.test"], {})
