"""The local store: round trips, namespaces, corruption, read-only, the Backend contract."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from gocaas.cache import Backend, CacheError, Entry, Store, verify
from gocaas.cache.store import default_cache_dir
from tests.cache.conftest import sha

AID = sha(b"action one")
BODY = b"compiled package archive\n" * 40


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture(params=["local"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Every tier runs the same contract tests (only the local disk so far; a remote tier joins later)."""
    assert request.param == "local"
    return Store(tmp_path / "store")


def test_backend_contract(backend: Backend) -> None:
    assert isinstance(backend, Backend)
    assert backend.get("ns", AID) is None
    assert not backend.has(sha(BODY))
    assert backend.open(sha(BODY)) is None
    before = time.time_ns()
    entry = backend.put("ns", AID, sha(BODY), BODY)
    assert entry == Entry(sha(BODY), len(BODY), entry.time_ns)
    assert before <= entry.time_ns <= time.time_ns()
    assert backend.get("ns", AID) == entry
    assert backend.has(sha(BODY))
    f = backend.open(sha(BODY))
    assert f is not None
    with f:
        assert f.read() == BODY
    with pytest.raises(CacheError, match="does not hash"):
        backend.put("ns", sha(b"other"), sha(b"not the body"), BODY)
    assert backend.get("ns", sha(b"other")) is None


def test_layout_and_object_file(store: Store) -> None:
    entry = store.put("default", AID, sha(BODY), BODY)
    obj = Path(store.path(entry.output_id))
    assert obj == Path(store.root) / "objects" / sha(BODY).hex()[:2] / sha(BODY).hex()
    assert obj.read_bytes() == BODY
    assert obj.stat().st_mode & stat.S_IXUSR, "objects are executable: linked binaries come out of the cache"
    action = Path(store.root) / "actions" / "default" / AID.hex()[:2] / AID.hex()
    assert action.read_text() == f"v1 {sha(BODY).hex()} {len(BODY)} {entry.time_ns}\n"
    assert not list((Path(store.root) / "tmp").iterdir()), "no temp files left behind"


def test_put_from_a_file_and_empty_body(store: Store, tmp_path: Path) -> None:
    big = os.urandom(3 << 20)
    (tmp_path / "big").write_bytes(big)
    with (tmp_path / "big").open("rb") as f:
        entry = store.put("default", AID, sha(big), f)
    assert Path(store.path(entry.output_id)).read_bytes() == big
    empty = store.put("default", sha(b"empty"), sha(b""), b"")
    assert empty.size == 0 and store.get("default", sha(b"empty")) == empty


def test_namespaces_scope_entries_and_share_objects(store: Store) -> None:
    store.put("team-a", AID, sha(BODY), BODY)
    assert store.get("team-a", AID) is not None
    assert store.get("team-b", AID) is None
    store.put("team-b", AID, sha(BODY), BODY)
    assert len(list((Path(store.root) / "objects").rglob("*"))) == 2, "one object dir and one object"
    other = b"something else"
    store.put("team-b", AID, sha(other), other)
    assert store.get("team-a", AID).output_id == sha(BODY)  # type: ignore[union-attr]
    assert store.get("team-b", AID).output_id == sha(other)  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b", ".hidden", "x" * 101, "sp ace"])
def test_bad_namespaces_are_refused(store: Store, bad: str) -> None:
    with pytest.raises(CacheError, match="bad namespace"):
        store.get(bad, AID)


def test_truncated_object_is_a_miss_and_removed(store: Store) -> None:
    entry = store.put("default", AID, sha(BODY), BODY)
    obj = Path(store.path(entry.output_id))
    obj.write_bytes(BODY[:-10])
    assert store.get("default", AID) is None
    assert not obj.exists()
    store.put("default", AID, sha(BODY), BODY)  # the next put repairs it
    assert store.get("default", AID) == Entry(sha(BODY), len(BODY), store.get("default", AID).time_ns)  # type: ignore[union-attr]


def test_same_size_corruption_of_a_small_object_is_a_miss(store: Store) -> None:
    entry = store.put("default", AID, sha(BODY), BODY)
    obj = Path(store.path(entry.output_id))
    obj.write_bytes(BODY.replace(b"package", b"PACKAGE"))
    assert store.get("default", AID) is None, "objects up to verify_limit (64 KiB) are rehashed on a hit"
    assert not obj.exists()
    assert store.corrupt == 1


def test_same_size_corruption_of_a_big_object_is_found_by_verify(tmp_path: Path) -> None:
    big = os.urandom(200_000)
    plain = Store(tmp_path / "s")
    entry = plain.put("default", AID, sha(big), big)
    obj = Path(plain.path(entry.output_id))
    obj.write_bytes(bytes(8) + big[8:])
    # Beyond verify_limit a hit checks the size only (like the go command's own cache).
    assert plain.get("default", AID) is not None
    careful = Store(tmp_path / "s", verify_limit=1 << 20)
    assert careful.get("default", AID) is None
    assert not obj.exists()

    plain.put("default", AID, sha(big), big)
    obj.write_bytes(bytes(8) + big[8:])
    result = verify(plain)
    assert (result.objects, result.corrupt_objects, result.actions, result.bad_actions) == (1, 1, 1, 1)
    assert not obj.exists()
    assert plain.get("default", AID) is None


def test_garbage_entry_is_a_miss_and_removed(store: Store) -> None:
    store.put("default", AID, sha(BODY), BODY)
    action = Path(store.action_path("default", AID))
    action.write_bytes(b"\x00garbage")
    assert store.get("default", AID) is None
    assert not action.exists()
    assert Path(store.path(sha(BODY))).exists(), "the object is fine and stays"


def test_entry_lying_about_size_loses_the_entry_not_the_object(store: Store) -> None:
    entry = store.put("default", AID, sha(BODY), BODY)
    action = Path(store.action_path("default", AID))
    action.write_text(f"v1 {sha(BODY).hex()} {len(BODY) + 1} {entry.time_ns}\n")
    assert store.get("default", AID) is None
    assert not action.exists()
    assert Path(store.path(sha(BODY))).read_bytes() == BODY


def test_read_only_store_never_writes(tmp_path: Path) -> None:
    writable = Store(tmp_path / "s")
    entry = writable.put("default", AID, sha(BODY), BODY)
    obj = Path(writable.path(entry.output_id))
    old = time.time() - 86400
    os.utime(obj, (old, old))
    obj.write_bytes(BODY[:5])
    os.utime(obj, (old, old))
    ro = Store(tmp_path / "s", read_only=True)
    assert ro.get("default", AID) is None
    assert obj.read_bytes() == BODY[:5] and obj.stat().st_mtime == old, "neither removed nor touched"
    with pytest.raises(CacheError, match="read-only"):
        ro.put("default", AID, sha(BODY), BODY)
    missing = Store(tmp_path / "nothing-here", read_only=True)
    assert missing.get("default", AID) is None
    assert not (tmp_path / "nothing-here").exists()


def test_hits_refresh_old_files_only(store: Store) -> None:
    entry = store.put("default", AID, sha(BODY), BODY)
    obj, action = Path(store.path(entry.output_id)), Path(store.action_path("default", AID))
    recent = time.time() - 60
    os.utime(obj, (recent, recent))
    store.get("default", AID)
    assert obj.stat().st_mtime == recent, "no utime per hit"
    old = time.time() - 3 * 3600
    for path in (obj, action):
        os.utime(path, (old, old))
    store.get("default", AID)
    assert obj.stat().st_mtime > time.time() - 60 and action.stat().st_mtime > time.time() - 60


def test_default_cache_dir() -> None:
    assert default_cache_dir({"GOCAAS_HOME": "/data/g"}) == "/data/g/cache"
    assert default_cache_dir({"XDG_DATA_HOME": "/x"}) == "/x/gocaas/cache"
    assert default_cache_dir({}).endswith("/.local/share/gocaas/cache")
