"""Bad settings are a bad-input exit (2) with `error: bad settings: ...` naming the environment variable,
the config file or the option, never a traceback; and what loads is usable downstream (absolute home,
finite bounded timeouts)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from gocaas.cli.app import app
from gocaas.settings import MAX_SECONDS, Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Only the GOCAAS_* variables a test sets; the data directory in tmp_path."""
    import os

    for key in list(os.environ):
        if key.lower().startswith("gocaas_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GOCAAS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def gocaas(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback is the bug
    return result.exit_code, " ".join(result.stderr.split())  # rich wraps long lines


def bad_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, err = gocaas("cache", "stats")
    assert code == 2, err
    assert err.startswith("error: bad settings: "), err
    return err


# The config file.


def test_invalid_toml_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("not = [toml\n")
    err = bad_settings(monkeypatch, GOCAAS_CONFIG="bad.toml")
    assert "GOCAAS_CONFIG=bad.toml: not valid TOML" in err and "line 1" in err


def test_non_utf8_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "bin.toml").write_bytes(b'goproxy = "\xff\xfe"\n')
    err = bad_settings(monkeypatch, GOCAAS_CONFIG=str(tmp_path / "bin.toml"))
    assert "bin.toml: not UTF-8 text" in err


def test_default_config_file_is_named_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("build_timeout = \n")
    err = bad_settings(monkeypatch)
    assert f"{home / 'config.toml'}: not valid TOML" in err


@pytest.mark.parametrize("where", ["missing.toml", "."])
def test_explicit_config_must_be_a_file(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    err = bad_settings(monkeypatch, GOCAAS_CONFIG=where)
    assert f"GOCAAS_CONFIG={where}: " in err
    assert ("no such file" if where != "." else "not a regular file") in err


def test_bad_value_in_the_config_names_key_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text("build_timeout = inf\nbogus = 1\n")
    err = bad_settings(monkeypatch, GOCAAS_CONFIG="c.toml")
    assert "build_timeout in GOCAAS_CONFIG=c.toml: Input should be a finite number" in err
    assert "bogus in GOCAAS_CONFIG=c.toml: not a setting" in err


def test_good_config_still_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('git_allowed_schemes = ["https"]\n[[test_tiers]]\nname = "e2e"\n')
    monkeypatch.setenv("GOCAAS_CONFIG", "c.toml")
    settings = Settings()
    assert settings.git_allowed_schemes == ("https",)
    assert [t.name for t in settings.test_tiers] == ["e2e"]


# List settings: comma-separated or JSON.


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https", ("https",)),
        ("https, SSH,", ("https", "ssh")),
        ('["https", "file"]', ("https", "file")),
        ("", ()),
    ],
)
def test_git_allowed_schemes_from_env(monkeypatch: pytest.MonkeyPatch, value: str, expected: tuple) -> None:
    monkeypatch.setenv("GOCAAS_GIT_ALLOWED_SCHEMES", value)
    assert Settings().git_allowed_schemes == expected


def test_server_git_hosts_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOCAAS_SERVER_GIT_HOSTS", "github.com,gitlab.example.org")
    assert Settings().server_git_hosts == ("github.com", "gitlab.example.org")


@pytest.mark.parametrize("value", ["https ssh", '["https"', "ht tps"])
def test_bad_schemes_name_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    err = bad_settings(monkeypatch, GOCAAS_GIT_ALLOWED_SCHEMES=value)
    assert "GOCAAS_GIT_ALLOWED_SCHEMES: not a " in err


@pytest.mark.parametrize(
    ("value", "expected"),
    [("4G", 4 << 30), ("512MiB", 512 << 20), ("0", 0), ("1073741824", 1 << 30)],
)
def test_build_memory_limit_takes_sizes(monkeypatch: pytest.MonkeyPatch, value: str, expected: int) -> None:
    monkeypatch.setenv("GOCAAS_BUILD_MEMORY_LIMIT", value)
    settings = Settings()
    assert settings.build_memory_limit == expected
    assert settings.effective_build_memory_limit() == (expected or None)


@pytest.mark.parametrize(
    ("value", "said"), [("lots", "bad size 'lots'"), ("1M", "too little for go"), ("-5G", "bad size")]
)
def test_bad_build_memory_limit_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, said: str
) -> None:
    err = bad_settings(monkeypatch, GOCAAS_BUILD_MEMORY_LIMIT=value)
    assert "GOCAAS_BUILD_MEMORY_LIMIT" in err and said in err, err


def test_cache_budget_and_min_free_take_sizes_and_percentages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOCAAS_CACHE_MAX_SIZE", "50G")
    monkeypatch.setenv("GOCAAS_CACHE_MIN_FREE", "20GiB")
    monkeypatch.setenv("GOCAAS_RESULTS_MAX_SIZE", "1.5G")
    settings = Settings()
    assert (settings.cache_max_size, settings.cache_min_free) == (50 << 30, "20G")
    assert settings.results_max_size == int(1.5 * (1 << 30))
    monkeypatch.setenv("GOCAAS_CACHE_MIN_FREE", "12.5%")
    assert Settings().cache_min_free == "12.5%"
    assert Settings(cache_max_size=0, cache_min_free="0%").cache_min_free == "0"
    assert Settings(cache_max_size=0).cache_max_size == 0


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("GOCAAS_CACHE_MAX_SIZE", "lots", "bad size 'lots'"),
        ("GOCAAS_CACHE_MAX_SIZE", "-1G", "bad size '-1G'"),
        ("GOCAAS_RESULTS_MAX_SIZE", "5 gigs", "bad size '5 gigs'"),
        ("GOCAAS_CACHE_MIN_FREE", "100%", "a percentage must be from 0 to below 100"),
        ("GOCAAS_CACHE_MIN_FREE", "plenty", "want a size such as 20G, or a percentage"),
    ],
)
def test_bad_cache_sizes_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, said: str
) -> None:
    err = bad_settings(monkeypatch, **{variable: value})
    assert variable in err and said in err, err


def test_garbage_test_tiers_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    err = bad_settings(monkeypatch, GOCAAS_TEST_TIERS="garbage")
    assert "GOCAAS_TEST_TIERS: not a JSON list of tiers" in err


@pytest.mark.parametrize("timeout", ["NaN", "Infinity", '"inf"', "1e10"])
def test_tier_timeouts_are_finite_and_bounded(monkeypatch: pytest.MonkeyPatch, timeout: str) -> None:
    err = bad_settings(monkeypatch, GOCAAS_TEST_TIERS=f'[{{"name": "unit", "timeout": {timeout}}}]')
    assert "GOCAAS_TEST_TIERS: a tier's timeout" in err


def test_json_test_tiers_still_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "GOCAAS_TEST_TIERS", '[{"name": "unit", "timeout": 60}, {"name": "e2e", "default": false}]'
    )
    assert [(t.name, t.timeout) for t in Settings().test_tiers] == [("unit", 60.0), ("e2e", 600.0)]


# The data directory.


def test_home_that_is_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    err = bad_settings(monkeypatch, GOCAAS_HOME=str(tmp_path / "afile"))
    assert "GOCAAS_HOME: not a directory" in err


def test_home_that_cannot_be_made(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    err = bad_settings(monkeypatch, GOCAAS_HOME=str(tmp_path / "afile" / "sub"))
    assert "GOCAAS_HOME: cannot create" in err


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_home_in_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    err = bad_settings(monkeypatch, GOCAAS_HOME="/proc/gocaas-no-such-dir")
    assert "GOCAAS_HOME: cannot create /proc/gocaas-no-such-dir" in err


def test_relative_home_is_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOCAAS_HOME", "relhome")
    (tmp_path / "relhome").mkdir()
    (tmp_path / "relhome" / "config.toml").write_text("build_timeout = 60\n")  # found there too
    settings = Settings()
    assert settings.home == tmp_path / "relhome"
    assert settings.build_timeout == 60
    assert all(p.is_absolute() for p in (settings.gomodcache, settings.cache_dir, settings.builds_dir))
    assert settings.db_url == f"sqlite:///{tmp_path / 'relhome' / 'gocaas.db'}"
    assert Settings(home=Path("other")).home == tmp_path / "other"
    code, err = gocaas("cache", "stats")
    assert code == 0, err


def test_empty_home_is_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOCAAS_HOME", "")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert Settings().home == tmp_path / "xdg" / "gocaas"


# Seconds, days and ratios: finite, and bounded.

FLOATS = [name for name, f in Settings.model_fields.items() if f.annotation in (float, float | None)]


def test_every_float_setting_is_checked() -> None:
    assert {"build_timeout", "git_timeout", "retry_max_delay", "server_prune_interval"} <= set(FLOATS)


@pytest.mark.parametrize("name", FLOATS)
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_float_settings_reject_nan_and_inf(name: str, value: float) -> None:
    with pytest.raises(ValidationError, match="finite number"):
        Settings(**{name: value})


@pytest.mark.parametrize("value", ["inf", "nan", "1e10", str(MAX_SECONDS + 1), "0", "-1"])
def test_build_timeout_env(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    err = bad_settings(monkeypatch, GOCAAS_BUILD_TIMEOUT=value)
    assert "GOCAAS_BUILD_TIMEOUT: Input should be" in err


def test_build_timeout_at_the_maximum() -> None:
    assert Settings(build_timeout=MAX_SECONDS).build_timeout == MAX_SECONDS


@pytest.mark.parametrize("value", ["nan", "inf", "1e10", "0"])
def test_timeout_option_is_named(tmp_path: Path, value: str) -> None:
    code, err = gocaas("build", str(tmp_path), "--timeout", value)
    assert code == 2
    assert err.startswith("error: --timeout: Input should be"), err


# URLs.


def test_garbage_pip_index_url(monkeypatch: pytest.MonkeyPatch) -> None:
    err = bad_settings(monkeypatch, GOCAAS_PIP_INDEX_URL="garbage")
    assert "GOCAAS_PIP_INDEX_URL: not an http(s) URL: 'garbage'" in err


@pytest.mark.parametrize(
    ("value", "expected"),
    [("https://pypi.example.org/simple", "https://pypi.example.org/simple"), ("", None)],
)
def test_good_pip_index_url(monkeypatch: pytest.MonkeyPatch, value: str, expected: str | None) -> None:
    monkeypatch.setenv("GOCAAS_PIP_INDEX_URL", value)
    assert Settings().pip_index_url == expected


def test_signing_keys_are_checked_when_loaded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    err = bad_settings(monkeypatch, GOCAAS_CACHE_REMOTE_VERIFY_KEYS="ab" * 32 + ",not-hex")
    assert "GOCAAS_CACHE_REMOTE_VERIFY_KEYS: " in err and "bad public key: want 64 hex digits" in err
    monkeypatch.delenv("GOCAAS_CACHE_REMOTE_VERIFY_KEYS")
    err = bad_settings(monkeypatch, GOCAAS_CACHE_REMOTE_SIGNING_KEY_FILE=str(tmp_path / "nope.key"))
    assert "GOCAAS_CACHE_REMOTE_SIGNING_KEY_FILE: " in err and "cannot read the signing key" in err
    code, _ = gocaas("cache", "keygen", str(tmp_path / "k"))
    assert code == 0
    monkeypatch.setenv("GOCAAS_CACHE_REMOTE_SIGNING_KEY_FILE", str(tmp_path / "k"))
    monkeypatch.setenv("GOCAAS_CACHE_REMOTE_VERIFY_KEYS", f"{'AB' * 32}, {'cd' * 32}")
    settings = Settings()
    assert settings.cache_remote_signing_key_file == tmp_path / "k"
    assert settings.cache_remote_verify_keys == ("ab" * 32, "cd" * 32)


def test_the_sandbox_setting_names_its_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    assert bad_settings(monkeypatch, GOCAAS_SANDBOX="sometimes").count("'auto', 'on' or 'off'") == 1
