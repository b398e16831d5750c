"""Which address a request comes from: X-Forwarded-For is believed only from the proxies
VAULT_TRUSTED_PROXIES names, by address or by network (an ingress controller's pods change
address), and read from the right so a client cannot choose what the limits see."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from tests.conftest import make_settings
from vault.settings import Settings
from vault.web.pages import client_address


class _App:
    def __init__(self, settings: Settings) -> None:
        self.state = type("State", (), {"settings": settings})()


def _request(settings: Settings, peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (peer, 4242),
                    "app": _App(settings)})


@pytest.fixture
def behind_ingress(tmp_path) -> Settings:
    return make_settings(tmp_path, f"sqlite:///{tmp_path}/v.sqlite3", trusted_proxies="10.42.0.0/16, 192.0.2.10")


def test_a_proxy_in_a_trusted_network_passes_on_the_client_address(behind_ingress) -> None:
    assert client_address(_request(behind_ingress, "10.42.7.19", "203.0.113.5")) == "203.0.113.5"
    assert client_address(_request(behind_ingress, "192.0.2.10", "203.0.113.6")) == "203.0.113.6"


def test_the_address_a_client_writes_itself_is_not_believed(behind_ingress) -> None:
    # The client sent "X-Forwarded-For: 198.51.100.1"; the ingress appended the real address.
    assert client_address(_request(behind_ingress, "10.42.0.3", "198.51.100.1, 203.0.113.5")) == "203.0.113.5"
    # Two trusted hops (a load balancer, then the ingress): the first untrusted one from the right.
    assert client_address(_request(behind_ingress, "10.42.0.3", "203.0.113.5, 192.0.2.10")) == "203.0.113.5"


def test_a_peer_outside_the_trusted_networks_is_the_client_whatever_it_forwards(behind_ingress) -> None:
    assert client_address(_request(behind_ingress, "10.43.0.1", "203.0.113.5")) == "10.43.0.1"
    assert client_address(_request(behind_ingress, "192.0.2.11", "203.0.113.5")) == "192.0.2.11"


def test_a_forwarded_value_that_is_no_address_leaves_the_peer(behind_ingress) -> None:
    assert client_address(_request(behind_ingress, "10.42.0.3", "not-an-address")) == "10.42.0.3"
    assert client_address(_request(behind_ingress, "10.42.0.3", "")) == "10.42.0.3"


@pytest.mark.parametrize("value", ["10.42.0.0/33", "10.0.0.300", "ingress.local", "10.0.0.1;10.0.0.2"])
def test_a_trusted_proxy_that_is_no_address_nor_network_is_refused_at_start(tmp_path, value) -> None:
    with pytest.raises(ValueError, match=r"VAULT_TRUSTED_PROXIES: .* is not an IP address nor a network"):
        make_settings(tmp_path, f"sqlite:///{tmp_path}/v.sqlite3", trusted_proxies=value)
