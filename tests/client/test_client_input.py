"""The client refuses what it cannot send before it sends anything: a URL urllib cannot split, an empty
or unsendable token, an empty build id. And a password in the server URL never shows in a message."""

from __future__ import annotations

import socket

import pytest

from gocaas.client import GocaasClient
from gocaas.errors import BadInput, TransientError


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999", "ftp://h", "h:80", "http://"])
def test_an_unusable_server_url_is_bad_input(url: str) -> None:
    with pytest.raises(BadInput, match="server URL must be"):
        GocaasClient(url, "token")


@pytest.mark.parametrize("token", ["", "a b", "line\nbreak", "caf\u00e9"])
def test_an_unsendable_token_is_bad_input(token: str) -> None:
    with pytest.raises(BadInput, match="token: "):  # httpx said "Illegal header value", as a network error
        GocaasClient("http://127.0.0.1:8080", token)


def test_an_empty_build_id_is_bad_input_not_the_build_list() -> None:
    with GocaasClient("http://127.0.0.1:8080", "token") as client, pytest.raises(BadInput, match="build id"):
        client.get("")


def test_a_password_in_the_url_is_not_repeated() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = GocaasClient(f"http://ci:s3cret@127.0.0.1:{port}", "token", attempts=1)
    with client, pytest.raises(TransientError) as caught:
        client.get("20261126T101010-0badf00d")
    assert "s3cret" not in str(caught.value) and f"ci:***@127.0.0.1:{port}" in str(caught.value)
