"""The build cache: a content-addressed store on local disk and a GOCACHEPROG server over it.

Import time matters here: the go command starts `gocaas.cache.prog` once per go invocation, so this package
imports nothing at import time. The public names below are loaded on first use.

- `Store` (`gocaas.cache.store`): objects by SHA-256 under `objects/`, action entries per namespace under
  `actions/<namespace>/`; `get`/`put`/`has`/`open` is the `Backend` seam a remote tier will share.
- `gc`, `verify`, `usage` (`gocaas.cache.maintenance`): size budget with LRU eviction, rehash-and-repair.
- `main` (`gocaas.cache.prog`): the GOCACHEPROG program; `cacheprog_command` (`gocaas.cache.command`) the
  GOCACHEPROG value that starts it.
- The remote tier: `gocaas.cache.server` (`serve`, `serve_command`, `make_server`: a Store over HTTP with
  bearer tokens), `gocaas.cache.client.HTTPRemote` (its client, also a `Backend`) and
  `gocaas.cache.remote.RemoteTier` (cacheprog `--remote`: read through, upload behind, circuit breaker).
"""

from __future__ import annotations

__all__ = [
    "Backend",
    "CacheError",
    "Entry",
    "GCResult",
    "Stats",
    "Store",
    "VerifyResult",
    "cacheprog_argv",
    "cacheprog_command",
    "default_cache_dir",
    "gc",
    "main",
    "usage",
    "verify",
]

_WHERE = {
    "Backend": "backend",
    "CacheError": "store",
    "Entry": "store",
    "Store": "store",
    "default_cache_dir": "store",
    "GCResult": "maintenance",
    "VerifyResult": "maintenance",
    "gc": "maintenance",
    "usage": "maintenance",
    "verify": "maintenance",
    "Stats": "stats",
    "main": "prog",
    "cacheprog_argv": "command",
    "cacheprog_command": "command",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gocaas.cache' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"gocaas.cache.{module}"), name)
