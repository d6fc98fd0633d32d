"""How a go command inside the build sandbox reaches a cache program running outside it.

The go command starts its GOCACHEPROG program itself, so in a sandbox the program would run in there too:
with the store writable, the remote's token and the signing key within reach of the module's tests, and a
PID namespace that kills its after-session work. Instead, gocaas starts the cache program outside, on a
listening unix socket of its own (`cacheprog --attach-fd N`), and sets GOCACHEPROG to this file, run as a
script: it connects, hands over its stdin, stdout and stderr (the go command's pipes) with SCM_RIGHTS, and
exits. The cache program puts them on its own 0, 1 and 2 and serves the go command on them directly: no
copying, no extra hop per request.

Why nobody else can take the go command's place: the socket lies in a fresh 0700 directory bound into that
one go command's sandbox; the go command starts its program before it builds anything, so no module code
runs in there until the cache program has accepted the one connection and removed the socket. If the go
command never asks (it failed first), gocaas connects and hands over nothing, and the program exits.

Stdlib only, `_socket` rather than `socket` in the sandboxed half: it starts under `python -I -S` for every
go command (~4 ms less than importing socket).
"""

# ruff: noqa: PTH108

from __future__ import annotations

import os
import sys

FDS = (0, 1, 2)  # the go command's pipes to its program, and its stderr


def hand_over(path: str) -> int:
    """In the sandbox, as GOCACHEPROG: give this process's stdin, stdout and stderr to the cache program
    listening at path. Exit status 0, or 1 with a message on stderr (the go command then stops)."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
        fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in FDS)
        sock.sendmsg([b"go"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
    except OSError as e:
        sys.stderr.write(f"gocaas cacheprog: cannot reach the cache program at {path}: {e}\n")
        return 1
    finally:
        sock.close()
    return 0


def receive(listener_fd: int, parent: int | None = None) -> bool:
    """In the cache program (--attach-fd): accept one connection on the inherited listening socket, remove
    the socket, and put the descriptors handed over on 0, 1 and 2. False when none came: gocaas woke us
    because the go command never asked, or gocaas (parent: its pid, which gocaas passes because it may
    die before we look) is gone, killed before it could."""
    import contextlib
    import socket

    parent = parent or os.getppid()
    with socket.socket(fileno=listener_fd) as listener:
        path = listener.getsockname()
        listener.settimeout(1.0)
        conn = None
        while conn is None:
            with contextlib.suppress(TimeoutError):
                conn, _ = listener.accept()
            if conn is None and os.getppid() != parent:
                break
    with contextlib.suppress(OSError):
        os.unlink(path)
    if conn is None:
        return False
    with conn:
        conn.settimeout(10.0)  # the handoff sends at once, right after it connects
        _, fds, _, _ = socket.recv_fds(conn, 16, len(FDS))
    if len(fds) != len(FDS):
        for fd in fds:
            os.close(fd)
        return False
    sys.stderr.flush()
    for target, fd in zip(FDS, fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    return True


if __name__ == "__main__":  # under -I: this directory is not on sys.path
    sys.exit(hand_over(sys.argv[1]))
