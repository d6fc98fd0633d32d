"""Signed action entries: which object answers which action, vouched for by a trusted writer.

An object is checked against its hash, but an entry (action → object) cannot be checked that way: a remote
that swaps or forges entries makes the go command read the wrong package (pipeline/cachedamage.py recovers
from that after the fact). With signing, trusted workers sign each entry they upload with an Ed25519
private key (`--signing-key-file`), the server stores the signature with the entry without knowing any
key, and readers holding the public key (`--verify-key`) take from the remote only entries signed by it:
an unsigned one is a miss, a bad signature a failure of the remote for its circuit breaker.

Ed25519, not an HMAC: a worker that runs untrusted code can verify without holding anything that lets it
sign (a test binary sees what cacheprog sees: its environment, its user's files).

The signed message binds the namespace, the action, the object and its size; the put time is not signed
(it only orders entries). Keys are 32 bytes in hex: a private key file holds the seed on one line
(`gocaas cache keygen` writes one and prints its public key).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs cacheprog start-up time
if TYPE_CHECKING:
    from typing import Any

DOMAIN = b"gocaas action entry v1\0"
SIGNATURE_BYTES = 64


def _ed25519() -> Any:
    from gocaas.cache.lazyremote import import_site

    return import_site("cryptography.hazmat.primitives.asymmetric.ed25519")


def entry_message(namespace: str, action_id: bytes, output_id: bytes, size: int) -> bytes:
    ns = namespace.encode()
    return b"".join(
        (DOMAIN, bytes([len(ns)]), ns, bytes([len(action_id)]), action_id, output_id, size.to_bytes(8, "big"))
    )


def parse_key(text: str, what: str) -> bytes:
    """32 bytes from 64 hex digits; ValueError naming `what` otherwise."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError(
            f"bad {what}: want 64 hex digits (an Ed25519 key), got {len(text.strip())} characters"
        )
    return key


class EntrySigner:
    def __init__(self, seed: bytes) -> None:
        self._key = _ed25519().Ed25519PrivateKey.from_private_bytes(seed)

    @classmethod
    def from_file(cls, path: str) -> EntrySigner:
        with open(path, encoding="ascii") as f:  # noqa: PTH123 - pathlib costs cacheprog start-up time
            return cls(parse_key(f.read(), f"signing key in {path}"))

    def public_key(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        return self._key.public_key().public_bytes(*raw)  # type: ignore[no-any-return]

    def sign(self, namespace: str, action_id: bytes, output_id: bytes, size: int) -> bytes:
        return self._key.sign(entry_message(namespace, action_id, output_id, size))  # type: ignore[no-any-return]


class EntryVerifier:
    """Accepts an entry signed by any of the public keys (more than one while a key is being rotated)."""

    def __init__(self, public_keys: list[bytes]) -> None:
        ed25519 = _ed25519()
        from cryptography.exceptions import InvalidSignature

        self._keys = [ed25519.Ed25519PublicKey.from_public_bytes(k) for k in public_keys]
        self._invalid = InvalidSignature

    def check(self, namespace: str, action_id: bytes, output_id: bytes, size: int, sig: bytes) -> str:
        """ "ok", "unsigned" (no signature) or "bad" (one that none of the keys made for this entry)."""
        if not sig:
            return "unsigned"
        if len(sig) != SIGNATURE_BYTES:
            return "bad"
        message = entry_message(namespace, action_id, output_id, size)
        for key in self._keys:
            try:
                key.verify(sig, message)
            except self._invalid:
                continue
            return "ok"
        return "bad"


def generate(path: str) -> bytes:
    """Write a new private key to path (mode 0600, never over an existing file); returns its public key."""
    seed = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(seed.hex() + "\n")
    return EntrySigner(seed).public_key()
