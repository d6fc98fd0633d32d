"""The daemon's wire format over its Unix socket: length-prefixed JSON messages, the first of which may
carry file descriptors (SCM_RIGHTS). Client → daemon: one request, with the client's stdin, stdout, stderr
and working directory as descriptors. Daemon → client: {"pid": N} once the command's process is forked,
then {"exit": CODE} when it has exited. Stdlib only."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
from collections.abc import Sequence
from typing import Any

_HEADER = struct.Struct("!I")
MAX_MESSAGE = 4 << 20  # an environment and argv; anything larger is not a gocaas client


class ProtocolError(Exception):
    pass


def send_message(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    payload = _HEADER.pack(len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [payload], list(fds))
        payload = payload[sent:]
    sock.sendall(payload)


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, missing = [], size
    while missing:
        chunk = sock.recv(min(missing, 1 << 16))
        if not chunk:
            return None
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def recv_message(sock: socket.socket, *, max_fds: int = 0) -> tuple[dict[str, Any] | None, list[int]]:
    """(message, descriptors); (None, []) if the peer closed before a whole message came. Descriptors
    received with a message that then turns out bad are closed before ProtocolError is raised."""
    if max_fds:
        head, fds, _flags, _addr = socket.recv_fds(sock, _HEADER.size, max_fds)
    else:
        head, fds = sock.recv(_HEADER.size), []
    try:
        if len(head) < _HEADER.size:
            rest = _recv_exactly(sock, _HEADER.size - len(head)) if head else None
            if rest is None:
                _close(fds)
                return None, []
            head += rest
        (size,) = _HEADER.unpack(head)
        if size > MAX_MESSAGE:
            raise ProtocolError(f"message of {size} bytes (limit {MAX_MESSAGE})")
        data = _recv_exactly(sock, size)
        if data is None:
            _close(fds)
            return None, []
        message = json.loads(data)
        if not isinstance(message, dict):
            raise ProtocolError("message is not a JSON object")
        return message, fds
    except (ProtocolError, ValueError, OSError):
        _close(fds)
        raise


def _close(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
