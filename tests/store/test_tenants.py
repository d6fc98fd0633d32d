"""The tenant repository's contract (tenants and bearer tokens), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from gocaas.errors import BadInput
from gocaas.store import Store
from gocaas.store.tenants import TOKEN_PREFIX, Principal, TenantRepo, hash_token


@pytest.fixture
def repo(store: Store) -> TenantRepo:
    return TenantRepo(store)


def stored_values(store: Store, table: str) -> list[str]:
    """Every value of every row of `table`, as text."""
    with store.session(write=False) as session:
        rows = session.execute(text(f"SELECT * FROM {table}")).all()
    return [str(value) for row in rows for value in row]


def test_token_plaintext_is_never_stored(repo: TenantRepo, store: Store) -> None:
    made = [repo.create_token("acme", label="ci"), repo.create_token("acme", admin=True)]
    made.append(repo.create_token("other", label="laptop"))
    values = stored_values(store, "api_tokens") + stored_values(store, "tenants")
    assert len(stored_values(store, "api_tokens")) >= 3 * 6
    for new in made:
        token = new.token
        assert token.startswith(TOKEN_PREFIX) and len(token) > len(TOKEN_PREFIX) + 40
        secret = token.removeprefix(TOKEN_PREFIX)
        assert not [v for v in values if token in v or secret in v], "a token is stored in plaintext"
        # What is stored is its SHA-256.
        assert hashlib.sha256(token.encode()).hexdigest() == hash_token(token)
        assert hash_token(token) in values
    assert len({new.token for new in made}) == 3


def test_authenticate(repo: TenantRepo) -> None:
    first = repo.create_token("acme", label="ci")
    second = repo.create_token("acme", admin=True)
    theirs = repo.create_token("other")
    assert first.principal == Principal(first.principal.tenant_id, "acme", admin=False)
    assert second.principal.tenant_id == first.principal.tenant_id  # the tenant is made once
    assert theirs.principal.tenant_id != first.principal.tenant_id
    assert repo.authenticate(first.token) == first.principal
    assert repo.authenticate(second.token) == Principal(first.principal.tenant_id, "acme", admin=True)
    assert repo.authenticate(theirs.token) == Principal(theirs.principal.tenant_id, "other", admin=False)
    assert repo.tenant_names() == {first.principal.tenant_id: "acme", theirs.principal.tenant_id: "other"}


@pytest.mark.parametrize("presented", ["", "gcs_", "nonsense", "gcs_" + "A" * 43])
def test_unknown_tokens_do_not_authenticate(repo: TenantRepo, presented: str) -> None:
    repo.create_token("acme")
    assert repo.authenticate(presented) is None


def test_a_tokens_hash_does_not_authenticate(repo: TenantRepo) -> None:
    new = repo.create_token("acme")
    assert repo.authenticate(hash_token(new.token)) is None
    assert repo.authenticate(new.token.upper()) is None


def test_revoke(repo: TenantRepo) -> None:
    kept = repo.create_token("acme")
    gone = repo.create_token("acme")
    assert repo.revoke(gone.token)
    assert repo.authenticate(gone.token) is None
    assert repo.authenticate(kept.token) == kept.principal
    assert not repo.revoke(gone.token)  # once
    assert not repo.revoke("gcs_unknown")
    assert repo.authenticate(gone.token) is None
    assert repo.token_count() == 2  # revoked tokens stay on record


def test_token_count(repo: TenantRepo) -> None:
    assert repo.token_count() == 0
    assert repo.tenant_names() == {}
    repo.create_token("acme")
    assert repo.token_count() == 1
    repo.create_token("acme")
    repo.create_token("other", admin=True)
    assert repo.token_count() == 3


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Acme",
        "acme corp",
        "-acme",
        ".acme",
        "_acme",
        "..",
        "a/b",
        "../etc",
        "a" * 65,
        "acme\n",
        "\nacme",
        "acme\t",
        "acmé",
        "acme:1",
    ],
)
def test_bad_tenant_names_are_refused(repo: TenantRepo, name: str) -> None:
    with pytest.raises(BadInput) as caught:
        repo.create_token(name)
    assert repr(name) in caught.value.message
    assert caught.value.kind == "bad_tenant"
    assert repo.token_count() == 0 and repo.tenant_names() == {}


@pytest.mark.parametrize("name", ["a", "0", "acme", "a.b_c-d", "team-42", "a" * 64, "a.."])
def test_plain_tenant_names_are_accepted(repo: TenantRepo, name: str) -> None:
    new = repo.create_token(name)
    assert new.principal.tenant == name
    assert repo.authenticate(new.token) == new.principal
