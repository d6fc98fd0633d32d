"""The flags of `gocaas cacheprog`, parsed without argparse (which costs milliseconds of start-up)."""

from __future__ import annotations

import math
import os

from gocaas.cache.diskspace import DEFAULT_MIN_FREE, MinFree
from gocaas.cache.stats import STATS_ENV
from gocaas.cache.store import (
    DEFAULT_MAX_SIZE,
    DEFAULT_VERIFY_LIMIT,
    MIN_AGE_S,
    CacheError,
    check_namespace,
    default_cache_dir,
)

USAGE = """usage: gocaas cacheprog [--dir DIR] [--namespace NS] [--read-only] [--workers N]
                        [--max-size SIZE] [--verify-limit SIZE] [--stats FILE] [--refill]
                        [--finish-before-close] [--attach-fd N [--parent PID]]
                        [--resident [--resident-idle S] [--runtime-dir DIR]]
                        [--remote URL [--token T | --token-file F] [--remote-timeout S]
                         [--remote-read-only] [--flush-timeout S] [--no-prefetch]
                         [--signing-key-file F] [--verify-key HEX ...]]

A GOCACHEPROG program: GOCACHEPROG="gocaas cacheprog ..." go build ./...

  --dir DIR           the store (default $GOCAAS_HOME/cache, GOCAAS_HOME defaulting to ~/.local/share/gocaas)
  --namespace NS      action entries are scoped to NS; objects are shared (default: default)
  --read-only         only get: the go command never sends put, and nothing in the store is written
  --workers N         a pool of N threads for gets and puts when requests queue up (default 0: none)
  --max-size SIZE     size budget, e.g. 10G, 500M (default 10G; 0 for none); past it, an LRU gc runs
  --min-free SIZE|N%  space to keep free on the store's filesystem (default 5%; 0 for none): under it, an
                      LRU gc runs whatever the budget says
  --min-age SECONDS   gc never removes files used more recently than this (default 7200; see store.py)
  --verify-limit SIZE rehash objects up to SIZE on every hit, bigger ones get a size check (default 64K)
  --stats FILE        append one JSON line of counters on close (also: $GOCAAS_CACHEPROG_STATS)
  --refill            answer every get with a miss, so the go command rebuilds what it needs and puts it
                      again, replacing the entries it would have read (and asks no remote): how gocaas
                      re-runs a go command whose failure points at a damaged cache
  --finish-before-close
                      do the work that otherwise follows the session (a due gc, writing prefetched
                      entries) before answering close: for a go command run in a PID namespace of its
                      own (a sandbox that starts the program inside), where everything still running
                      when the go command exits is killed; gocaas runs its program outside instead
  --attach-fd N       serve the go command that connects to the listening unix socket N (inherited) and
                      hands over its pipes: how gocaas serves a sandboxed go command from outside its
                      sandbox (handoff.py)
  --parent PID        with --attach-fd: stop waiting when PID, which started us, is gone (default: the
                      parent process we see at start)
  --resident          hand the go command to a resident cache program for the same store and options,
                      which keeps the entries it read in memory (resident.py); without one, serve it
                      here and start one in the background for the next go command. With --attach-fd,
                      hand over what came from the socket. With --remote, the resident program asks the
                      remote for each go command as this one would. Not with --refill or
                      --finish-before-close
  --resident-idle S   a resident program started now exits after S seconds without a go command
                      (default 900)
  --runtime-dir DIR   where resident programs' sockets are: a directory only this user can use (made
                      0700 if missing; default $XDG_RUNTIME_DIR/gocaas, else $TMPDIR/gocaas-UID)
  --remote URL        a `gocaas cache serve` behind the local store: local misses are asked there (and
                      fill the local store), puts are uploaded in the background (see remote.py)
  --token T           its bearer token (default $GOCAAS_CACHE_TOKEN; --token-file F reads it from F)
  --remote-timeout S  connecting and each read of a remote get (default 2); failures open a circuit breaker
  --remote-read-only  never upload
  --flush-timeout S   on close, wait this long at most for queued uploads (default 5)
  --no-prefetch       fetch each local miss on its own, and send no trace; by default the first miss
                      streams in what the last session using it used, and each session sends its trace
                      (the actions it used) on close (see prefetch.py)
  --signing-key-file F  sign each uploaded entry with the Ed25519 private key in F (signing.py)
  --verify-key HEX    take from the remote only entries signed by this Ed25519 public key (repeatable:
                      any of them); an unsigned entry is a miss, a bad signature the remote's failure
"""

TYPE_CHECKING = False  # not typing's: it costs start-up time
if TYPE_CHECKING:
    from collections.abc import Mapping

TOKEN_ENV = "GOCAAS_CACHE_TOKEN"
RESIDENT_IDLE_S = 900.0
MAX_WORKERS = 256  # threads: more only costs memory (each go command has a few dozen gets in flight)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class Options:
    __slots__ = (
        "attach_fd", "attach_parent", "dir", "finish_first", "flush_timeout", "max_size", "min_age",
        "min_free", "namespace", "prefetch", "read_only", "refill", "remote", "remote_read_only",
        "remote_timeout", "resident", "resident_idle", "resident_serve", "runtime_dir", "signing_key_file",
        "stats", "token", "verify_keys", "verify_limit", "workers",
    )  # fmt: skip

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.dir = ""
        self.namespace = "default"
        self.read_only = False
        self.refill = False
        self.finish_first = False
        self.resident = False
        self.resident_serve = False  # internal: be the resident program (resident.spawn starts it so)
        self.resident_idle = RESIDENT_IDLE_S
        self.runtime_dir = ""
        self.attach_fd: int | None = None
        self.attach_parent: int | None = None
        self.workers = 0
        self.max_size: int | None = DEFAULT_MAX_SIZE
        self.min_age = float(MIN_AGE_S)
        self.min_free: MinFree | None = DEFAULT_MIN_FREE
        self.verify_limit = DEFAULT_VERIFY_LIMIT
        self.stats = environ.get(STATS_ENV, "")
        self.remote = ""
        self.token = environ.get(TOKEN_ENV, "")
        self.remote_timeout = 2.0
        self.remote_read_only = False
        self.flush_timeout = 5.0
        self.prefetch = True
        self.signing_key_file = ""
        self.verify_keys: list[bytes] = []


def parse_size(text: str) -> int:
    """Bytes from "10GiB", "500M", "1.5G", "4096" (K, M, G, T are powers of 1024); ValueError naming the text
    unless it is a finite number ≥ 0."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _UNITS else ""
    try:
        number = float(t[: len(t) - len(unit)])
    except ValueError:
        number = -1.0
    if not 0 <= number < 1 << 63:  # also NaN, inf
        raise ValueError(f"bad size {text!r}: expected a number of bytes ≥ 0, optionally with K, M, G or T")
    return int(number * _UNITS[unit])


_SETTERS = {
    "--dir": lambda o, v: setattr(o, "dir", v),
    "--namespace": lambda o, v: setattr(o, "namespace", check_namespace(v)),
    "--workers": lambda o, v: setattr(o, "workers", _whole(v, MAX_WORKERS)),
    "--max-size": lambda o, v: setattr(o, "max_size", parse_size(v) or None),
    "--min-free": lambda o, v: setattr(o, "min_free", MinFree.parse(v)),
    "--min-age": lambda o, v: setattr(o, "min_age", _within(v, 0, 10 * 365 * 86400)),
    "--verify-limit": lambda o, v: setattr(o, "verify_limit", parse_size(v)),
    "--stats": lambda o, v: setattr(o, "stats", v),
    "--remote": lambda o, v: setattr(o, "remote", _check_url(v)),
    "--token": lambda o, v: setattr(o, "token", v),
    "--token-file": lambda o, v: setattr(o, "token", _read_token(v)),
    "--remote-timeout": lambda o, v: setattr(o, "remote_timeout", _within(v, 0.001, 3600)),
    "--flush-timeout": lambda o, v: setattr(o, "flush_timeout", _within(v, 0, 3600)),
    "--signing-key-file": lambda o, v: setattr(o, "signing_key_file", _readable(v)),
    "--verify-key": lambda o, v: o.verify_keys.append(_public_key(v)),
    "--attach-fd": lambda o, v: setattr(o, "attach_fd", _whole(v, 1 << 20)),
    "--parent": lambda o, v: setattr(o, "attach_parent", _whole(v, 1 << 22)),
    "--runtime-dir": lambda o, v: setattr(o, "runtime_dir", _absolute(v)),
    "--resident-idle": lambda o, v: setattr(o, "resident_idle", _within(v, 0.001, 30 * 86400)),
}
_FLAGS = {
    "--read-only": "read_only",
    "--remote-read-only": "remote_read_only",
    "--refill": "refill",
    "--finish-before-close": "finish_first",
    "--resident": "resident",
    "--resident-serve": "resident_serve",
}
_OFF_FLAGS = {"--no-prefetch": "prefetch"}


def _check_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"want an http:// or https:// URL, got {url!r}")
    return url


def _absolute(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"want an absolute path, got {path!r}")
    return path


def _readable(path: str) -> str:
    with open(path, encoding="ascii"):  # noqa: PTH123 - a missing key file is bad usage, said at once
        return os.path.abspath(path)  # noqa: PTH100 - a resident program reads it from elsewhere


def _public_key(text: str) -> bytes:
    from gocaas.cache.signing import parse_key  # imports nothing heavy until a key is used

    return parse_key(text, "public key")


def _read_token(path: str) -> str:
    with open(path, encoding="utf-8") as f:  # noqa: PTH123 - pathlib costs start-up time
        return f.read().strip()


def _within(text: str, low: float, high: float) -> float:
    """A number from low to high (never NaN or infinite), else ValueError (parse_args names the flag)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        raise ValueError(f"want a number from {low:.12g} to {high:.12g}, got {text!r}")
    return value


def _whole(text: str, high: int) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > high:
        raise ValueError(f"want a whole number from 0 to {high}, got {text!r}")
    return int(text)


def parse_args(argv: list[str], environ: Mapping[str, str] | None = None) -> Options:
    """Parse the flags (no argparse: it costs start-up time); defaults from environ (os.environ). Raises
    ValueError with a message."""
    opts = Options(environ)
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, eq, value = arg.partition("=")
        if name in _FLAGS and not eq:
            setattr(opts, _FLAGS[name], True)
            continue
        if name in _OFF_FLAGS and not eq:
            setattr(opts, _OFF_FLAGS[name], False)
            continue
        setter = _SETTERS.get(name)
        if setter is None:
            raise ValueError(f"unknown argument {arg!r}")
        if not eq:
            if not args:
                raise ValueError(f"{name} needs a value")
            value = args.pop(0)
        try:
            setter(opts, value)
        except (ValueError, CacheError, OSError) as e:
            raise ValueError(f"{name}: {e}") from None
    opts.dir = opts.dir or default_cache_dir()
    if opts.resident or opts.resident_serve:
        apart = (("--refill", opts.refill), ("--finish-before-close", opts.finish_first))
        alone = [flag for flag, on in apart if on]
        if alone:
            raise ValueError(f"--resident does not work with {' or '.join(alone)}: leave one of them out")
    return opts
