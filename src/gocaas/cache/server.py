"""`gocaas cache serve`: a Store served over HTTP, the remote tier that cacheprog `--remote` talks to.

    GET|HEAD /v1/{namespace}/ac/{action_id}  the action entry: JSON {"output_id", "size", "time_ns"}, and the
                                             same in X-Gocaas-Output-Id/-Size/-Time-Ns headers; 404 if absent.
                                             With `Accept: application/octet-stream` the body is the object
                                             itself (the entry in the headers): a miss costs one round trip.
    PUT      /v1/{namespace}/ac/{action_id}  JSON {"output_id", "size"[, "time_ns"]}; 409 unless the object
                                             is there with that size (PUT it first).
    GET|HEAD /v1/cas/{output_id}             an object (sent with sendfile).
    PUT      /v1/cas/{output_id}             an object: Content-Length required, at most max_object_size
                                             (411, 413); streamed to disk while hashed; 400 unless its SHA-256
                                             is output_id.
    POST     /v1/{namespace}/traces          a session's trace: the action IDs it used, a lowercase hex one a
                                             line, in the order it used them (traces.py); a write, as PUTs.
    GET      /v1/{namespace}/traces/{action_id}
                                             the manifest of the newest trace holding action_id: a line
                                             "<action> <output> <size> <time_ns>" per entry the store has now
                                             (text/plain); 404 if no trace holds it.
    POST     /v1/cas/pack                    many objects in one answer: the body lists output IDs (hex, one a
                                             line); the answer has, for each in turn, "<output> <size>\n" and
                                             the bytes ("<output> -1\n" if absent), and ends with the
                                             connection. How a worker prefetches a manifest (prefetch.py).
    GET      /v1/status                      request counters (JSON).  GET /healthz: "ok", no token needed.
    GET      /metrics                        the same counters, action lookups by namespace and the store's
                                             size and budget, for Prometheus (server_metrics.py); a token
                                             needed, a read token will do.

Every /v1 request carries `Authorization: Bearer <token>` (compared in constant time; 401 without it or with a
wrong one). The write token may read and write; an optional read token only reads (403 on PUT), as does every
token on a `read_only` server and every token for the `read_only_namespaces`. Bad namespaces or keys are 400
naming the field. Errors are JSON {"error": "..."}. An entry PUT may carry "sig", its writer's signature
(signing.py), kept with the entry and answered with it (X-Gocaas-Sig, a manifest line's fifth field); with
`verify_keys`, an entry PUT without a signature one of them made is refused (403), so that a write token
alone cannot put entries.

Why the standard library's ThreadingHTTPServer and not FastAPI on uvicorn: a fresh worker fetches one object
per go get, strictly in turn, and `go build std` is 1,066 of them (167 MB), so the round trip is the cost.
Measured on loopback here with the same http.client client: FastAPI (FileResponse) 1.1 ms a small GET, a
raw ASGI app on uvicorn+uvloop+httptools 95 µs, this server 103 µs; for the whole std set both of the
latter take ~0.5-1 s. This one sends bodies with sendfile (no copy through Python), hashes uploads in
threads that release the GIL, and adds no dependency. One thread per connection: each cacheprog keeps a few.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Iterable
from http.server import ThreadingHTTPServer

from gocaas.cache.diskspace import DEFAULT_MIN_FREE, MinFree
from gocaas.cache.handler import Handler
from gocaas.cache.store import DEFAULT_MAX_SIZE, Store, check_namespace
from gocaas.cache.traces import TraceStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from gocaas.cache.signing import EntryVerifier

TOKEN_ENV = "GOCAAS_CACHE_TOKEN"
READ_TOKEN_ENV = "GOCAAS_CACHE_READ_TOKEN"
DEFAULT_MAX_OBJECT = 2 << 30


def parse_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT or [V6]:PORT → (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise ValueError(f"--listen wants HOST:PORT with a port from 0 to 65535, got {listen!r}")
    return host.strip("[]"), int(port)


class CacheHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        store: Store,
        *,
        token: str,
        read_token: str | None = None,
        read_only_namespaces: Iterable[str] = (),
        max_object_size: int = DEFAULT_MAX_OBJECT,
        verify_keys: Iterable[bytes] = (),
    ) -> None:
        if not token:
            raise ValueError(f"a token is required (--token or ${TOKEN_ENV})")
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.store = store
        self.tokens = [(b"Bearer " + token.encode(), True)]
        if read_token:
            self.tokens.append((b"Bearer " + read_token.encode(), False))
        self.read_only_namespaces = frozenset(check_namespace(ns) for ns in read_only_namespaces)
        self.max_object_size = max_object_size
        self.verifier: EntryVerifier | None = None
        if keys := list(verify_keys):  # entries must be signed by one of these (signing.py)
            from gocaas.cache.signing import EntryVerifier

            self.verifier = EntryVerifier(keys)
        self.counters = dict.fromkeys(("requests", "ac_hits", "ac_misses", "cas_gets", "puts", "refused"), 0)
        self.counters |= {"bytes_in": 0, "bytes_out": 0, "errors": 0, "manifests": 0, "packs": 0}
        self.namespace_counters: dict[tuple[str, str], int] = {}  # (namespace, counter): for /metrics
        self.metrics_registry: CollectorRegistry | None = None  # made at the first scrape (server_metrics.py)
        self.traces = TraceStore(store)
        self.lock = threading.Lock()
        self._gc_running = threading.Lock()
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"

    def count(self, namespace: str | None = None, **deltas: int) -> None:
        """Add to the counters; with namespace, to that namespace's too."""
        with self.lock:
            for name, delta in deltas.items():
                self.counters[name] += delta
                if namespace is not None:
                    key = (namespace, name)
                    self.namespace_counters[key] = self.namespace_counters.get(key, 0) + delta

    def maybe_gc(self) -> None:
        if self.store.over_budget and self._gc_running.acquire(False):
            threading.Thread(target=self._gc, daemon=True).start()

    def _gc(self) -> None:
        from gocaas.cache.maintenance import auto_gc, disk_note

        try:
            if note := disk_note(auto_gc(self.store), self.store):
                sys.stderr.write(f"gocaas cache serve: {note}\n")
            self.store.over_budget = False
        except Exception as e:  # pragma: no cover - logged, the server goes on
            sys.stderr.write(f"gocaas cache serve: gc failed: {e}\n")
        finally:
            self._gc_running.release()


def make_server(
    store_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    *,
    read_token: str | None = None,
    read_only: bool = False,
    read_only_namespaces: Iterable[str] = (),
    max_object_size: int = DEFAULT_MAX_OBJECT,
    max_size: int | None = DEFAULT_MAX_SIZE,
    min_free: MinFree | None = DEFAULT_MIN_FREE,
    verify_keys: Iterable[bytes] = (),
) -> CacheHTTPServer:
    """A bound server (port 0: any free port, see `.url`); run it with serve_forever(), stop with shutdown().
    The token defaults to $GOCAAS_CACHE_TOKEN; max_size is the store's budget and min_free the space its
    disk keeps free (an LRU gc past either; None: none)."""
    store = Store(store_dir, read_only=read_only, max_size=max_size, min_free=min_free)
    try:
        return CacheHTTPServer(
            (host, port),
            store,
            token=token or os.environ.get(TOKEN_ENV, ""),
            read_token=read_token,
            read_only_namespaces=read_only_namespaces,
            max_object_size=max_object_size,
            verify_keys=verify_keys,
        )
    except OSError as e:  # in use, not an address of this machine, a name that does not resolve
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e


def serve(
    store_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    **options: object,
) -> None:
    """Serve the store until SIGINT or SIGTERM; prints "listening on URL" to stderr once ready."""
    import signal

    server = make_server(store_dir, host, port, token, **options)  # type: ignore[arg-type]

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    sys.stderr.write(f"gocaas cache serve: listening on {server.url}, store {server.store.root}\n")
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if server.store.added and not server.store.read_only:
            server.store.flush_usage()


def serve_command(
    listen: str = "127.0.0.1:8080",
    token: str | None = None,
    store_dir: str | os.PathLike[str] | None = None,
    *,
    read_token: str | None = None,
    read_only: bool = False,
    read_only_namespaces: Iterable[str] = (),
    max_size: str | None = None,
    min_free: str | None = None,
    max_object_size: str | None = None,
    verify_keys: Iterable[str] = (),
) -> None:
    """`gocaas cache serve --listen HOST:PORT [--token T] [--dir DIR] ...`: flags as given on a command line
    (sizes like 10G; token default $GOCAAS_CACHE_TOKEN; dir default the local cache dir). Blocks."""
    from gocaas.cache.options import parse_size
    from gocaas.cache.signing import parse_key
    from gocaas.cache.store import default_cache_dir

    host, port = parse_listen(listen)
    serve(
        store_dir or default_cache_dir(),
        host,
        port,
        token,
        read_token=read_token or os.environ.get(READ_TOKEN_ENV) or None,
        read_only=read_only,
        read_only_namespaces=tuple(read_only_namespaces),
        max_size=DEFAULT_MAX_SIZE if max_size is None else (parse_size(max_size) or None),
        min_free=DEFAULT_MIN_FREE if min_free is None else MinFree.parse(min_free),
        max_object_size=DEFAULT_MAX_OBJECT if max_object_size is None else parse_size(max_object_size),
        verify_keys=[parse_key(key, "--verify-key") for key in verify_keys],
    )


def main(argv: list[str] | None = None) -> int:
    """python -m gocaas.cache.server: the same as `gocaas cache serve`."""
    import argparse

    parser = argparse.ArgumentParser(prog="gocaas cache serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (default 127.0.0.1:8080)")
    parser.add_argument("--token", help=f"the read-write bearer token (default ${TOKEN_ENV})")
    parser.add_argument("--read-token", help=f"a token that may only read (default ${READ_TOKEN_ENV})")
    parser.add_argument("--dir", help="the store (default $GOCAAS_HOME/cache)")
    parser.add_argument("--read-only", action="store_true", help="refuse every PUT")
    parser.add_argument("--read-only-namespace", action="append", default=[], metavar="NS",
                        help="refuse PUTs of action entries in NS (repeatable)")  # fmt: skip
    parser.add_argument("--max-size", help="the store's budget, e.g. 50G (default 10G; 0: none)")
    parser.add_argument("--min-free", help="space to keep free on the store's disk, e.g. 20G or 5%% "
                        "(default 5%%; 0: none): under it, an LRU gc runs")  # fmt: skip
    parser.add_argument("--max-object-size", help="the largest object a PUT may send (default 2G)")
    parser.add_argument("--verify-key", action="append", default=[], metavar="HEX",
                        help="accept only entries signed by this public key (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        serve_command(
            args.listen,
            args.token,
            args.dir,
            read_token=args.read_token,
            read_only=args.read_only,
            read_only_namespaces=args.read_only_namespace,
            max_size=args.max_size,
            min_free=args.min_free,
            max_object_size=args.max_object_size,
            verify_keys=args.verify_key,
        )
    except (ValueError, OSError) as e:
        sys.stderr.write(f"gocaas cache serve: {e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
