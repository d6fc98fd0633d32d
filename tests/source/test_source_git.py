"""Git intake against real local repositories: refs of every kind, describe/commit recorded, .git dropped,
URLs that could smuggle options or transports refused, failures classified."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from gocaas.errors import BadInput, InfraError, TransientError
from gocaas.settings import Settings
from gocaas.source import intake
from gocaas.source.git import redact, url_scheme
from gocaas.spec import SourceKind, SourceSpec
from tests.source.builders import GO_MOD, MAIN_GO, git


@dataclass(frozen=True)
class Repo:
    path: Path
    first: str  # tagged v1.0.0 (annotated)
    second: str  # main
    feature: str  # branch "feature", one commit past first

    @property
    def url(self) -> str:
        return self.path.as_uri()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    path = tmp_path_factory.mktemp("upstream") / "hello"
    path.mkdir()
    git(path, "init", "-q")
    (path / "go.mod").write_bytes(GO_MOD)
    (path / "main.go").write_bytes(MAIN_GO)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first")
    git(path, "tag", "-a", "v1.0.0", "-m", "release 1.0.0")
    first = git(path, "rev-parse", "HEAD")
    git(path, "checkout", "-q", "-b", "feature")
    (path / "feature.go").write_text("package main\n\nconst feature = true\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "feature")
    feature = git(path, "rev-parse", "HEAD")
    git(path, "checkout", "-q", "main")
    (path / "second.go").write_text("package main\n\nconst second = 2\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "second")
    return Repo(path, first, git(path, "rev-parse", "HEAD"), feature)


def git_spec(location: str, ref: str | None = None) -> SourceSpec:
    return SourceSpec(kind=SourceKind.GIT, location=location, ref=ref)


def test_tag_by_file_url(repo: Repo, dest: Path, settings: Settings) -> None:
    workspace = intake(git_spec(repo.url, "v1.0.0"), dest, settings)
    assert workspace.commit == repo.first
    assert workspace.describe == "v1.0.0"
    assert workspace.root == dest
    assert sorted(p.name for p in dest.iterdir()) == ["go.mod", "main.go"]  # no .git, no later files
    assert workspace.file_count == 2


def test_branch_by_plain_path(repo: Repo, dest: Path, settings: Settings) -> None:
    workspace = intake(git_spec(str(repo.path), "feature"), dest, settings)
    assert workspace.commit == repo.feature
    assert workspace.describe == repo.feature[:7]  # a shallow fetch of a branch brings no tags
    assert (dest / "feature.go").is_file()
    assert not (dest / ".git").exists()


def test_commit_sha(repo: Repo, dest: Path, settings: Settings) -> None:
    workspace = intake(git_spec(repo.url, repo.first), dest, settings)
    assert workspace.commit == repo.first
    assert not (dest / "second.go").exists()


def test_default_is_remote_head_and_relative_path(
    repo: Repo, dest: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo.path.parent)
    workspace = intake(git_spec("hello"), dest, settings)
    assert workspace.commit == repo.second
    assert (dest / "second.go").is_file()


def test_same_digest_as_directory_of_same_commit(repo: Repo, tmp_path: Path, settings: Settings) -> None:
    from_git = intake(git_spec(repo.url), tmp_path / "ws1", settings)
    from_dir = intake(
        SourceSpec(kind=SourceKind.DIRECTORY, location=str(repo.path)), tmp_path / "ws2", settings
    )
    assert from_git.digest == from_dir.digest
    assert from_dir.commit == from_git.commit == repo.second


@pytest.mark.parametrize("ref", ["no-such-branch", "v9.9.9", "0" * 40])
def test_unknown_ref(ref: str, repo: Repo, dest: Path, settings: Settings) -> None:
    with pytest.raises(BadInput, match=f"git ref '{ref}' not found in {repo.url}"):
        intake(git_spec(repo.url, ref), dest, settings)


def test_short_sha_gets_a_hint(repo: Repo, dest: Path, settings: Settings) -> None:
    with pytest.raises(BadInput, match="full sha"):
        intake(git_spec(repo.url, repo.first[:10]), dest, settings)


def test_not_a_repository(tmp_path: Path, dest: Path, settings: Settings) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(BadInput, match="not found or not readable"):
        intake(git_spec(str(tmp_path / "plain")), dest, settings)


def test_symlink_outside_in_repository_refused(tmp_path: Path, dest: Path, settings: Settings) -> None:
    path = tmp_path / "evil"
    path.mkdir()
    git(path, "init", "-q")
    (path / "go.mod").write_bytes(GO_MOD)
    (path / "leak").symlink_to("/etc/passwd")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "leak")
    with pytest.raises(BadInput, match="repository entry 'leak': symlink points outside"):
        intake(git_spec(str(path)), dest, settings)


def test_no_go_mod_in_repository(tmp_path: Path, dest: Path, settings: Settings) -> None:
    path = tmp_path / "nomod"
    path.mkdir()
    git(path, "init", "-q")
    (path / "README").write_text("hi\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "readme")
    with pytest.raises(BadInput, match=r"no go\.mod at the top of"):
        intake(git_spec(path.as_uri()), dest, settings)


@pytest.mark.parametrize(
    "location",
    ["file:///somewhere/repo", "/somewhere/repo", "git@example.com:owner/repo.git", "ssh://example.com/r"],
)
def test_scheme_not_allowed(location: str, tmp_path: Path, dest: Path) -> None:
    settings = Settings(home=tmp_path / "home", git_allowed_schemes=("https",))
    with pytest.raises(BadInput, match="is not allowed"):
        intake(git_spec(location), dest, settings)
    assert not any(dest.iterdir())


@pytest.mark.parametrize(
    "location",
    [
        "--upload-pack=touch /tmp/gocaas-pwned",
        "-oProxyCommand=touch",
        "https://example.com/repo\n.git",
        "https://example.com/a repo",
        "ssh://-oProxyCommand=touch/repo",
        "-host:repo",
    ],
)
def test_option_like_urls_refused(location: str, dest: Path, settings: Settings) -> None:
    with pytest.raises(BadInput, match="git URL"):
        intake(git_spec(location), dest, settings)


def test_remote_helper_transport_refused(dest: Path, settings: Settings) -> None:
    # ext:: runs a command; it is its own scheme, never in the allowed list.
    with pytest.raises(BadInput, match="scheme 'ext' is not allowed"):
        intake(git_spec("ext::sh"), dest, settings)


def test_connection_refused_is_network_error(tmp_path: Path, dest: Path) -> None:
    settings = Settings(home=tmp_path / "home", git_allowed_schemes=("http",))
    with pytest.raises(InfraError) as caught:
        intake(git_spec("http://127.0.0.1:1/repo.git"), dest, settings)
    assert isinstance(caught.value, TransientError)
    assert caught.value.kind == "network"


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("https://github.com/o/r.git", "https"),
        ("HTTPS://github.com/o/r.git", "https"),
        ("ssh://git@github.com/o/r.git", "ssh"),
        ("git+ssh://git@github.com/o/r.git", "ssh"),
        ("git://example.com/r", "git"),
        ("file:///srv/repo", "file"),
        ("git@github.com:o/r.git", "ssh"),
        ("host:path/repo", "ssh"),
        ("/srv/repo", "file"),
        ("./repo", "file"),
        ("dir/with:colon", "file"),
        ("fd::17", "fd"),
    ],
)
def test_url_scheme(url: str, scheme: str) -> None:
    assert url_scheme(url) == scheme


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("file://", "names no path"),
        ("ssh://", "names no host"),
        ("https://", "names no host"),
        ("git://[::1", "names no host"),
        ("https://github.com", "names no repository"),
        ("git@host:", "needs a host and a path"),
    ],
)
def test_malformed_urls_are_bad_input_not_a_network_failure(url: str, words: str) -> None:
    # git itself fails on these as if the network or the server had: exit 3, "infrastructure"
    with pytest.raises(BadInput, match=words) as caught:
        url_scheme(url)
    assert caught.value.kind == "bad_url"


def test_credentials_redacted() -> None:
    assert redact("https://user:token@example.com/r.git") == "https://***@example.com/r.git"
    assert redact("https://ghp_secret@example.com/r.git") == "https://***@example.com/r.git"
    assert redact("ssh://git:pw@example.com/r.git") == "ssh://git:***@example.com/r.git"
    assert redact("git@github.com:o/r.git") == "git@github.com:o/r.git"
