"""`cacheprog --resident`: hand the go command to a cache program that outlives it.

A go command starts its GOCACHEPROG program and waits for it; a warm `go build std` then asks it ~1,000 gets,
one round trip each. A program started for each go command pays Python's start and reads every entry from
disk (33 µs a get here, against 11 µs from memory). With --resident, the program the go command starts only
looks for a resident program serving the same store with the same options, hands it its stdin, stdout and
stderr (SCM_RIGHTS, as handoff.py does for sandboxes) and exits; the resident one serves the go command on
them directly, from the entries it holds in memory (resident_server.py). If none answers, this one starts
one in the background for the next go command and serves this go command itself, as without --resident.

Where: a socket in --runtime-dir, else in the user's private runtime directory (daemon.identity.runtime_dir,
the one the gocaas daemon uses; gocaas passes that explicitly, since its go commands get a TMPDIR of their
own), named after a digest of what the program would be: the interpreter, this package's cache code (sizes
and mtimes, so an upgrade starts a new one), the store's path and every option. The resident program
compares the whole key, not only the name, before it takes a go command. Only this user can reach the
directory; a sandboxed go command never sees it (the program gocaas starts for it outside hands over).

Lean like prog.py (this runs for every go command): os, _socket and zlib only.
"""

# ruff: noqa: PTH100, PTH108, PTH116, PTH120, PTH208 - os calls: pathlib costs start-up time

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gocaas.cache.options import Options

FDS = (0, 1, 2)
# The handshake: HELLO, the key, NUL, the namespace, NUL, the stats file; the resident program answers
# READY if it will serve that; only then do the go command's descriptors go over (with one byte), which it
# acks. The descriptors are never sent before the answer: sent to a program that is stopped or hung, they
# would wait in its socket, holding the go command's pipes open and the go command with them, for ever.
HELLO = b"gocaas-resident 3\n"
READY = b"?"
ACK = b"+"  # the resident program took the go command: from here on it alone answers on the pipes
LOCK = ".lock"  # next to the socket: held by the resident program listening there
ATTACH_TIMEOUT_S = 2.0  # the resident program acks at once; a hung one must not hold up the go command long


def resident_key(opts: Options) -> str:
    """Everything that must match for a resident program to serve this go command. Not the namespace: one
    program serves every namespace of its store (its memory is keyed by namespace), each go command
    saying which it wants."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = []
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            st = os.stat(f"{here}/{name}")
            code.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    remote = ""
    if opts.remote:  # the token too: a program holding another token would act with other rights
        remote = (
            f"remote={opts.remote} token={opts.token} timeout={opts.remote_timeout!r} "
            f"read_only={opts.remote_read_only} flush={opts.flush_timeout!r} prefetch={opts.prefetch} "
            f"signing={opts.signing_key_file} verify={','.join(key.hex() for key in opts.verify_keys)}"
        )
    return "\n".join([
        sys.executable, sys.version, ",".join(code), os.path.realpath(opts.dir),
        f"ro={opts.read_only} workers={opts.workers} max={opts.max_size} min_age={opts.min_age!r} "
        f"min_free={opts.min_free} verify={opts.verify_limit}", remote,
    ])  # fmt: skip


def socket_path(key: str, directory: str = "", environ: dict[str, str] | None = None) -> str | None:
    """The resident program's socket for key: in directory (--runtime-dir), else in the user's runtime
    directory; None when that is not a private directory of this user's."""
    from zlib import adler32, crc32

    from gocaas.daemon.identity import private_dir, runtime_dir

    if directory:
        if not private_dir(directory):
            return None
    else:
        found = runtime_dir(os.environ if environ is None else environ)
        if found is None:
            return None
        directory = found
    data = key.encode()
    return f"{directory}/cp-{crc32(data):08x}{adler32(data):08x}.sock"


def attach(key: str, path: str, stats_file: str, namespace: str = "default") -> bool:
    """Hand this process's stdin, stdout and stderr to the resident program at path; whether it took them
    (then this process only exits). False when none listens there or it refused (another key, shutting
    down): serve the go command here. One that does not answer in ATTACH_TIMEOUT_S (stopped, or hung) loses
    its socket and lock (forsake), so that the next go commands do not wait for it too: the next one that
    finds no socket starts another, and the stuck one ends once it runs again."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        inode = os.stat(path).st_ino
        sock.settimeout(ATTACH_TIMEOUT_S)
        sock.connect(path)
        sock.sendall(HELLO + key.encode() + b"\0" + namespace.encode() + b"\0" + os.fsencode(stats_file))
        if sock.recv(1) != READY:
            return False  # another key, or shutting down
        fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in FDS)
        sock.sendmsg([b"."], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        return sock.recv(1) == ACK
    except TimeoutError:
        forsake(path, inode)
        return False
    except OSError:  # none there (ENOENT, ECONNREFUSED), or gone meanwhile
        return False
    finally:
        sock.close()


def forsake(path: str, inode: int) -> None:
    """Take the socket at path, and its lock, from the resident program that did not answer on it, unless
    it is a replacement's (another inode) by now. Without its lock, which it holds until it runs again,
    a new resident program can start beside it (resident_server.take_lock)."""
    try:
        if os.stat(path).st_ino != inode:
            return
        os.unlink(path)
        os.unlink(path + LOCK)
    except OSError:
        pass


def spawn(opts: Options, runtime_dir: str, log: str) -> None:
    """Start a resident program for opts (its socket in runtime_dir) in the background, in a session of its
    own (the go command kills the program it started; this one must outlive it), quiet but for log, with
    no environment but the remote's token (what the go command's has, a build's TMPDIR or HOME, may not
    outlive it). Best effort: on failure, every go command serves itself, as without --resident."""
    from gocaas.cache.command import LAUNCHER
    from gocaas.cache.options import TOKEN_ENV  # loaded already: it parsed opts

    argv = [sys.executable, "-I", "-S", LAUNCHER, "--dir", os.path.realpath(opts.dir)]
    argv += ["--workers", str(opts.workers)]
    argv += ["--max-size", str(opts.max_size or 0), "--min-free", str(opts.min_free or 0)]
    argv += ["--min-age", repr(opts.min_age), "--verify-limit", str(opts.verify_limit)]
    argv += ["--runtime-dir", runtime_dir, "--resident-idle", repr(opts.resident_idle), "--resident-serve"]
    if opts.read_only:
        argv.append("--read-only")
    env = {}
    if opts.remote:
        argv += ["--remote", opts.remote, "--remote-timeout", repr(opts.remote_timeout)]
        argv += ["--flush-timeout", repr(opts.flush_timeout)]
        argv += ["--remote-read-only"] if opts.remote_read_only else []
        argv += [] if opts.prefetch else ["--no-prefetch"]
        argv += ["--signing-key-file", opts.signing_key_file] if opts.signing_key_file else []
        for key in opts.verify_keys:
            argv += ["--verify-key", key.hex()]
        env[TOKEN_ENV] = opts.token  # not in its argv, which every user can read
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
    ]
    try:
        os.posix_spawn(sys.executable, argv, env, file_actions=actions, setsid=True)
    except OSError as e:
        sys.stderr.write(f"gocaas cacheprog: cannot start a resident cache program: {e}\n")
