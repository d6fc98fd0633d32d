"""The remote tier as cacheprog sees it, made on first use (see prog.py: a go command that only hits
locally never imports http.client or pybreaker). Imports nothing heavy itself: it is on cacheprog's path."""

from __future__ import annotations

import sys
from _thread import allocate_lock

from gocaas.cache.stats import REMOTE_COUNTERS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from gocaas.cache.options import Options
    from gocaas.cache.remote import RemoteTier
    from gocaas.cache.store import Entry, Store


class LazyRemote:
    """fetch/upload/close as RemoteTier has them, never raising; if the tier cannot be made (say, pybreaker
    missing), that is said once on stderr and the session goes on with the local store only."""

    def __init__(self, store: Store, opts: Options, namespace: str) -> None:
        self.store, self.opts, self.namespace = store, opts, namespace
        self.upload_enabled = not (opts.remote_read_only or store.read_only)
        self._tier: RemoteTier | None = None
        self._broken = False
        self._lock = allocate_lock()

    def tier(self) -> RemoteTier | None:
        if self._tier is None and not self._broken:
            with self._lock:
                if self._tier is None and not self._broken:
                    try:
                        self._tier = self._make()
                    except Exception as e:
                        sys.stderr.write(f"gocaas cacheprog: no remote cache: {type(e).__name__}: {e}\n")
                        self._broken = True
        return self._tier

    def _make(self) -> RemoteTier:
        from gocaas.cache.client import HTTPRemote
        from gocaas.cache.remote import RemoteTier

        opts = self.opts
        signer = verifier = None
        if opts.signing_key_file or opts.verify_keys:
            from gocaas.cache.signing import EntrySigner, EntryVerifier

            signer = EntrySigner.from_file(opts.signing_key_file) if opts.signing_key_file else None
            verifier = EntryVerifier(opts.verify_keys) if opts.verify_keys else None
        client = HTTPRemote(opts.remote, opts.token, timeout=opts.remote_timeout)
        return RemoteTier(
            self.store,
            self.namespace,
            client,
            upload=self.upload_enabled,
            prefetch=opts.prefetch,
            signer=signer,
            verifier=verifier,
        )

    def fetch(self, action_id: bytes) -> tuple[Entry, str] | None:
        tier = self.tier()
        return tier.fetch(action_id) if tier is not None else None

    def prefetched(self, action_id: bytes) -> tuple[Entry, str] | None:
        """An entry a prefetch has brought in (its object is in the local store), if any; never waits."""
        tier = self._tier
        if tier is None or tier.prefetcher is None:
            return None
        return tier.prefetcher.ready(action_id)

    def upload(self, action_id: bytes, entry: Entry) -> None:
        if self.upload_enabled and (tier := self.tier()) is not None:
            tier.upload(action_id, entry)

    def close(self, trace: list[bytes] | None = None) -> dict[str, int]:
        """Flush uploads (up to --flush-timeout) and send the session's trace; the counters for the stats
        line. A session that never needed the remote sends nothing."""
        if self._tier is None:
            return dict.fromkeys(REMOTE_COUNTERS, 0)
        self._tier.close(self.opts.flush_timeout, trace)
        return self._tier.counters()

    def cleanup(self) -> None:
        if self._tier is not None:
            self._tier.cleanup()


def import_site(name: str) -> Any:
    """Module `name`, importable under cacheprog's `python -I -S`: the interpreter's site-packages are added
    to sys.path when the plain import fails (pybreaker for the tier, cryptography for signed entries)."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        import site

        sys.path.extend(p for p in site.getsitepackages() if p not in sys.path)
        return importlib.import_module(name)


def lazy_remote(store: Store, opts: Options, namespace: str | None = None) -> LazyRemote | None:
    """The remote tier of these options for namespace (default: opts'), or None without --remote (or
    without a token: said on stderr)."""
    if not opts.remote:
        return None
    if not opts.token:
        sys.stderr.write("gocaas cacheprog: --remote needs a token (--token, $GOCAAS_CACHE_TOKEN): unused\n")
        return None
    return LazyRemote(store, opts, namespace or opts.namespace)
