"""The client tests run against a real `gocaas serve`: the server tests' fixtures, shared."""

from tests.server.conftest import make_server, server  # noqa: F401
