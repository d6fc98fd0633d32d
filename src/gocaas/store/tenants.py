"""Tenants and their bearer tokens. A token is shown once, when it is made; the store keeps its SHA-256."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import func, select

from gocaas.errors import BadInput
from gocaas.store.models import ApiTokenRow, TenantRow
from gocaas.store.store import Store

__all__ = ["TENANT_NAME_RE", "TOKEN_PREFIX", "NewToken", "Principal", "TenantRepo", "hash_token"]

TOKEN_PREFIX: Final = "gcs_"
"""Tokens start with this, so secret scanners and people can tell what one is."""

TENANT_NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
r"""A tenant name is also its build cache namespace and a directory name: keep it plain. (`\Z`, not `$`:
`$` also matches before a trailing newline.)"""


def hash_token(token: str) -> str:
    # Tokens are 256 random bits: a plain hash is enough (nothing to guess), and fast per request.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for."""

    tenant_id: int
    tenant: str
    admin: bool = False


@dataclass(frozen=True, slots=True)
class NewToken:
    principal: Principal
    token: str


class TenantRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    def create_token(self, tenant: str, *, label: str = "", admin: bool = False) -> NewToken:
        """A new token for `tenant` (created if new). The plaintext exists only in the return value."""
        if not TENANT_NAME_RE.match(tenant):
            raise BadInput(
                f"not a tenant name: {tenant!r} (lowercase letters, digits and . _ -, at most 64)",
                kind="bad_tenant",
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self._store.session() as session:
            row = session.scalar(select(TenantRow).where(TenantRow.name == tenant))
            if row is None:
                row = TenantRow(name=tenant, created_at=now)
                session.add(row)
                session.flush()
            session.add(
                ApiTokenRow(
                    tenant_id=row.id, token_hash=hash_token(token), label=label, admin=admin, created_at=now
                )
            )
            return NewToken(Principal(row.id, row.name, admin), token)

    def authenticate(self, token: str) -> Principal | None:
        """The principal a presented token stands for, or None (unknown or revoked)."""
        with self._store.session(write=False) as session:
            found = session.execute(
                select(TenantRow.id, TenantRow.name, ApiTokenRow.admin)
                .join(ApiTokenRow, ApiTokenRow.tenant_id == TenantRow.id)
                .where(ApiTokenRow.token_hash == hash_token(token), ApiTokenRow.revoked_at.is_(None))
            ).first()
        return Principal(found[0], found[1], bool(found[2])) if found else None

    def revoke(self, token: str) -> bool:
        with self._store.session() as session:
            row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.token_hash == hash_token(token)))
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = datetime.now(UTC)
            return True

    def token_count(self) -> int:
        with self._store.session(write=False) as session:
            return session.scalar(select(func.count()).select_from(ApiTokenRow)) or 0

    def tenant_names(self) -> dict[int, str]:
        with self._store.session(write=False) as session:
            rows = session.execute(select(TenantRow.id, TenantRow.name))
            return {tenant_id: name for tenant_id, name in rows}
