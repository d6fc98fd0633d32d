"""The store opens an up-to-date database without Alembic; its head constant must match the migrations."""

from gocaas.store.migrate import HEAD_REVISION, head_revision


def test_head_constant_is_alembics_head() -> None:
    assert head_revision() == HEAD_REVISION
