"""Signed action entries: trusted writers sign what they upload, the server keeps the signature, and a
reader with the public key takes only what a key signed (signing.py, remote.py). The end-to-end tests use the
real go command, cacheprog as gocaas starts it (`python -I -S`) and a real `gocaas cache serve`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gocaas.cache import Store
from gocaas.cache.client import HTTPRemote, RemoteRefused
from gocaas.cache.signing import EntrySigner, EntryVerifier, generate, parse_key
from gocaas.cache.store import Entry
from gocaas.stages.gocmd import CACHE_STATS
from tests.cache.conftest import (
    HELLO,
    TOKEN,
    LiveServer,
    Session,
    go,
    python_env,
    read_stats,
    remote_args,
    sha,
)
from tests.cache.test_go import _compiles
from tests.cache.test_go_remote import remote_env
from tests.cache.test_stats_cli import stats_output

AID, OID = sha(b"an action"), sha(b"an output")


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "signing.key"
    return path, generate(str(path))


def test_a_signature_binds_namespace_action_output_and_size(keys: tuple[Path, bytes]) -> None:
    path, public = keys
    assert path.stat().st_mode & 0o777 == 0o600
    signer = EntrySigner.from_file(str(path))
    assert signer.public_key() == public
    sig = signer.sign("ns", AID, OID, 10)
    verifier = EntryVerifier([public])
    assert verifier.check("ns", AID, OID, 10, sig) == "ok"
    assert verifier.check("ns", AID, OID, 10, b"") == "unsigned"
    for changed in (
        ("other", AID, OID, 10),
        ("ns", OID, OID, 10),
        ("ns", AID, AID, 10),
        ("ns", AID, OID, 11),
    ):
        assert verifier.check(*changed, sig) == "bad", changed
    assert verifier.check("ns", AID, OID, 10, sig[:-1]) == "bad"
    other = EntrySigner(os.urandom(32))
    assert verifier.check("ns", AID, OID, 10, other.sign("ns", AID, OID, 10)) == "bad"
    rotating = EntryVerifier([other.public_key(), public])  # either key, while one replaces the other
    assert rotating.check("ns", AID, OID, 10, sig) == "ok"
    with pytest.raises(FileExistsError):
        generate(str(path))
    for bad in ("", "00" * 31, "zz" * 32, "00" * 33):
        with pytest.raises(ValueError, match="want 64 hex digits"):
            parse_key(bad, "public key")


def test_uploads_carry_a_signature_the_server_keeps(
    tmp_path: Path, keys: tuple[Path, bytes], live_server: Callable[..., LiveServer]
) -> None:
    path, public = keys
    server = live_server()
    writer = Session(tmp_path / "local", *remote_args(server.url), "--signing-key-file", str(path))
    writer.put(AID, b"body" * 100)
    assert writer.close() == 0
    entry = Store(server.store).get("default", AID)
    assert entry is not None and entry.sig
    assert EntryVerifier([public]).check("default", AID, entry.output_id, entry.size, entry.sig) == "ok"

    stats = tmp_path / "stats.jsonl"
    env = python_env(GOCAAS_CACHEPROG_STATS=str(stats))
    reader = Session(tmp_path / "fresh", *remote_args(server.url), "--verify-key", public.hex(), env=env)
    assert reader.get(AID)["Size"] == 400
    assert reader.close() == 0
    (line,) = read_stats(stats)
    assert line["remote_hits"] == 1 and line["remote_unsigned"] == line["remote_bad_signatures"] == 0


def signed_copy(store: Path, dest: Path, signer: EntrySigner, *, rotate: bool = False) -> None:
    """dest: store's objects (hard links) and its entries, signed for their own actions; with rotate, each
    action given the next entry, signature and all, as a remote that swaps entries would serve them."""
    for obj in (store / "objects").rglob("*"):
        if obj.is_file():
            (dest / obj.relative_to(store)).parent.mkdir(parents=True, exist_ok=True)
            os.link(obj, dest / obj.relative_to(store))
    source, target = Store(store, read_only=True), Store(dest)
    ids = sorted(bytes.fromhex(p.name) for p in (store / "actions" / "default").rglob("*") if p.is_file())
    found = [(aid, source.get("default", aid)) for aid in ids]
    signed = [(aid, e, signer.sign("default", aid, e.output_id, e.size)) for aid, e in found if e is not None]
    shifted = signed[1:] + signed[:1] if rotate else signed
    for (aid, _, _), (_, entry, sig) in zip(signed, shifted, strict=True):
        target.put_entry("default", aid, entry.output_id, entry.size, entry.time_ns, sig)


def serve_with_trace(live_server: Callable[..., LiveServer], store: Path) -> LiveServer:
    """The store served with one trace of all its actions: a fresh worker's first miss gets their manifest."""
    server = live_server(store)
    ids = [bytes.fromhex(p.name) for p in (store / "actions" / "default").rglob("*") if p.is_file()]
    HTTPRemote(server.url, TOKEN).put_trace("default", ids)
    return server


def test_a_verifying_worker_takes_signed_entries_and_refuses_swapped_ones(
    tmp_path: Path, warm_store: Path, keys: tuple[Path, bytes], live_server: Callable[..., LiveServer]
) -> None:
    path, public = keys
    signer = EntrySigner.from_file(str(path))
    signed_copy(warm_store, tmp_path / "signed", signer)
    good = serve_with_trace(live_server, tmp_path / "signed")
    env = remote_env(tmp_path / "a", tmp_path / "a-local", good.url, "--verify-key", public.hex())
    built = go(["build", "-x", "-o", str(tmp_path / "a" / "hello"), "."], HELLO, env)
    assert [c for c in _compiles(built.stderr) if "/compile " in c] == [], "everything from the remote"
    (line,) = read_stats(tmp_path / "a" / "stats.jsonl")
    assert line["remote_unsigned"] == line["remote_bad_signatures"] == line["remote_errors"] == 0
    assert line["prefetched"] > 50, "the manifest's signed entries were streamed in"

    signed_copy(warm_store, tmp_path / "swapped", signer, rotate=True)
    swapped = serve_with_trace(live_server, tmp_path / "swapped")
    env = remote_env(tmp_path / "b", tmp_path / "b-local", swapped.url, "--verify-key", public.hex())
    go(["build", "-o", str(tmp_path / "b" / "hello"), "."], HELLO, env)
    (line,) = read_stats(tmp_path / "b" / "stats.jsonl")
    assert line["hits"] == 0, "no entry taken, streamed in or fetched alone (objects may have come)"
    assert line["remote_bad_signatures"] > 50 and line["breaker_opens"] >= 1
    assert (tmp_path / "b" / "hello").read_bytes() == (tmp_path / "a" / "hello").read_bytes()


def test_unsigned_entries_are_misses_for_a_verifying_worker(
    tmp_path: Path, warm_store: Path, keys: tuple[Path, bytes], live_server: Callable[..., LiveServer]
) -> None:
    server = live_server(warm_store, read_only=True)  # entries written without signatures
    aid = bytes.fromhex(next(p.name for p in (warm_store / "actions" / "default").rglob("*") if p.is_file()))
    stats = tmp_path / "home" / "builds" / "b1" / CACHE_STATS  # where `gocaas cache stats` reads it
    stats.parent.mkdir(parents=True)
    env = python_env(GOCAAS_CACHEPROG_STATS=str(stats))
    verifying = Session(tmp_path / "v", *remote_args(server.url), "--verify-key", keys[1].hex(), env=env)
    assert verifying.get(aid)["Miss"] is True
    assert verifying.close() == 0
    trusting = Session(tmp_path / "t", *remote_args(server.url), env=env)  # no key: the entry is taken
    assert "Miss" not in trusting.get(aid)
    assert trusting.close() == 0
    first, second = read_stats(stats)
    assert first["remote_unsigned"] == 1 and first["remote_hits"] == 0 and first["remote_errors"] == 0
    assert second["remote_hits"] == 1
    assert stats_output(tmp_path / "home")["refused entries"] == "1 unsigned, 0 with a bad signature"
    assert not (tmp_path / "v" / "objects").exists() or not any((tmp_path / "v" / "objects").rglob("*"))


def test_the_server_refuses_a_malformed_signature(live_server: Callable[..., LiveServer]) -> None:
    server = live_server()
    remote = HTTPRemote(server.url, TOKEN)
    body = b"an object"
    remote.put_object(sha(body), body, len(body))
    for sig in (b"\x01" * 65, b""):
        entry = Entry(sha(body), len(body), 1, sig)
        if sig:
            with pytest.raises(RemoteRefused) as refused:
                remote.put_entry("default", AID, entry)
            assert refused.value.status == 400 and "bad sig" in str(refused.value)
        else:
            remote.put_entry("default", AID, entry)
    got = remote.get("default", AID)
    assert got is not None and got.sig == b"", "the refused entry left nothing behind"
    signed = Entry(sha(body), len(body), 1, b"\x02" * 64)
    remote.put_entry("default", AID, signed)
    got = remote.get("default", AID)
    assert got is not None and got.sig == signed.sig
    remote.close()


def test_verify_purges_entries_no_key_signed(tmp_path: Path, keys: tuple[Path, bytes]) -> None:
    """How a cache server is cleaned after untrusted writers got in: `gocaas cache verify --verify-key`."""
    path, public = keys
    signer = EntrySigner.from_file(str(path))
    home = tmp_path / "home"
    store = Store(home / "cache")
    ids = [sha(b"good"), sha(b"swapped"), sha(b"unsigned")]
    for aid in ids:
        store.put("default", aid, sha(aid), aid)
    good = signer.sign("default", ids[0], sha(ids[0]), 32)
    store.put_entry("default", ids[0], sha(ids[0]), 32, sig=good)
    store.put_entry("default", ids[1], sha(ids[1]), 32, sig=good)  # another action's signature

    def verify_cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = python_env(GOCAAS_HOME=str(home), COLUMNS="200")
        command = [sys.executable, "-m", "gocaas", "cache", "verify", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    first = verify_cli("--verify-key", public.hex())
    assert first.returncode == 1 and "1 bad signatures, 1 unsigned; removed 1" in first.stdout, first.stdout
    assert [store.get("default", aid) is not None for aid in ids] == [True, False, True]
    second = verify_cli("--verify-key", public.hex(), "--drop-unsigned")
    assert second.returncode == 0 and "0 bad signatures, 1 unsigned (removed); removed 1" in second.stdout
    assert [store.get("default", aid) is not None for aid in ids] == [True, False, False]
    bad_key = verify_cli("--verify-key", "zz")
    assert bad_key.returncode == 2 and "bad --verify-key: want 64 hex digits" in bad_key.stderr
    serve = [sys.executable, "-m", "gocaas.cache.server", "--token", "t", "--verify-key", "zz"]
    bad_server = subprocess.run(
        [*serve, "--dir", str(home / "cache")], env=python_env(), capture_output=True, text=True, timeout=60
    )
    assert bad_server.returncode == 2 and "bad --verify-key: want 64 hex digits" in bad_server.stderr
    refused = verify_cli("--drop-unsigned")
    assert refused.returncode == 2 and "needs a verify key" in refused.stderr
    assert verify_cli().returncode == 0, "without keys, signatures are not looked at"


def test_a_server_with_verify_keys_refuses_entries_no_key_signed(
    tmp_path: Path, keys: tuple[Path, bytes], live_server: Callable[..., LiveServer]
) -> None:
    """A write token alone cannot put entries: whoever lacks the private key is refused (403)."""
    path, public = keys
    server = live_server(verify_keys=[public])
    other = tmp_path / "other.key"
    generate(str(other))
    writers = {
        "unsigned": Session(tmp_path / "u", *remote_args(server.url)),
        "wrong key": Session(tmp_path / "w", *remote_args(server.url), "--signing-key-file", str(other)),
        "signed": Session(tmp_path / "s", *remote_args(server.url), "--signing-key-file", str(path)),
    }
    actions = {name: sha(name.encode()) for name in writers}
    for name, session in writers.items():
        session.put(actions[name], name.encode() * 50)
        assert session.close() == 0
    stored = Store(server.store)
    assert stored.get("default", actions["unsigned"]) is None
    assert stored.get("default", actions["wrong key"]) is None
    signed = stored.get("default", actions["signed"])
    assert signed is not None and signed.sig
    refused = HTTPRemote(server.url, TOKEN)
    with pytest.raises(RemoteRefused) as error:
        refused.put_entry("default", actions["unsigned"], Entry(signed.output_id, signed.size, 1, signed.sig))
    assert error.value.status == 403 and "not signed by a key this server trusts (bad)" in str(error.value)
    refused.close()
