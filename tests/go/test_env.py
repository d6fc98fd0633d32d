from pathlib import Path

import pytest

from gocaas.go.env import BuildDirs, check_flags, go_environ
from gocaas.settings import Settings
from gocaas.spec import Target


def test_environment_is_built_not_inherited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOFLAGS", "-toolexec=/bin/evil")
    monkeypatch.setenv("GOTOOLCHAIN", "auto")
    monkeypatch.setenv("LD_PRELOAD", "/tmp/evil.so")
    settings = Settings(home=tmp_path)
    dirs = BuildDirs(tmp_path / "b")
    env = go_environ(settings, Path("/usr/local/go"), dirs, target=Target.parse("windows/arm64"))
    assert "-toolexec" not in env["GOFLAGS"]
    assert env["GOFLAGS"].split() == ["-trimpath", "-buildvcs=false"]
    assert env["GOTOOLCHAIN"] == "local"
    assert "LD_PRELOAD" not in env
    assert env["GOOS"] == "windows" and env["GOARCH"] == "arm64"
    assert env["CGO_ENABLED"] == "0"
    assert env["HOME"] == str(dirs.home) and env["GOPATH"] == str(dirs.gopath)
    assert env["GOMODCACHE"] == str(settings.gomodcache)


@pytest.mark.parametrize("flag", ["-toolexec=x", "-exec", "--toolexec=y", "-overlay=o.json", "-modfile=m"])
def test_forbidden_flags_refused(flag: str) -> None:
    with pytest.raises(ValueError, match="refusing"):
        check_flags(["build", flag, "./..."])


def test_goflags_with_forbidden_flag_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="refusing"):
        go_environ(Settings(home=tmp_path), Path("/g"), BuildDirs(tmp_path), goflags=["-toolexec=/x"])


def test_settings_refuse_multiline_proxy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="single line"):
        Settings(home=tmp_path, goproxy="https://a\nGOFLAGS=-toolexec=x")
