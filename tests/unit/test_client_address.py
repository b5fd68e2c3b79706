"""Which address a request counts as: X-Forwarded-For only from trusted proxies, read from the
right, the first untrusted hop; IPv6 clients counted per /64."""

from __future__ import annotations

from typing import Any

import pytest

from eventscope.web.client_address import client_address, rate_key, trusted_networks

PROXIES = trusted_networks(("10.0.0.0/8", "192.0.2.1", "fd00::/8"))


def scope(peer: str, *forwarded: str) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", value.encode("latin-1")) for value in forwarded]
    return {"client": (peer, 40000), "headers": [(b"host", b"x"), *headers]}


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_address(scope("203.0.113.9", "1.2.3.4"), ()) == "203.0.113.9"


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    assert client_address(scope("203.0.113.9", "1.2.3.4"), PROXIES) == "203.0.113.9"


def test_a_trusted_proxy_names_the_client() -> None:
    assert client_address(scope("10.1.2.3", "198.51.100.7"), PROXIES) == "198.51.100.7"


def test_the_right_most_untrusted_hop_is_the_client_not_what_it_claims() -> None:
    # the client wrote "1.1.1.1, 10.9.9.9" itself; the proxy appended its real address
    forwarded = scope("10.1.2.3", "1.1.1.1, 10.9.9.9, 198.51.100.7")
    assert client_address(forwarded, PROXIES) == "198.51.100.7"


def test_a_chain_of_trusted_proxies_is_walked() -> None:
    chained = scope("192.0.2.1", "198.51.100.7, 10.0.0.5", "10.0.0.6")
    assert client_address(chained, PROXIES) == "198.51.100.7"


def test_when_every_hop_is_trusted_the_left_most_is_the_client() -> None:
    assert client_address(scope("10.0.0.1", "10.0.0.2, 10.0.0.3"), PROXIES) == "10.0.0.2"


def test_a_trusted_proxy_without_the_header_is_the_client() -> None:
    assert client_address(scope("10.0.0.1"), PROXIES) == "10.0.0.1"


@pytest.mark.parametrize(
    ("hop", "client"),
    [
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("198.51.100.7:8080", "198.51.100.7"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
    ],
)
def test_hops_with_ports_brackets_and_mapped_addresses_are_read(hop: str, client: str) -> None:
    assert client_address(scope("10.0.0.1", hop), PROXIES) == client


def test_ipv6_clients_are_counted_per_64() -> None:
    assert rate_key("2001:db8:1:2:aaaa::1") == rate_key("2001:db8:1:2:bbbb::2")
    assert rate_key("2001:db8:1:2::1") != rate_key("2001:db8:1:3::1")
    assert rate_key("198.51.100.7") == "198.51.100.7"
    assert rate_key("testclient") == "testclient"


def test_a_forwarded_header_of_thousands_of_hops_is_read_from_the_right_only() -> None:
    spoofed = ", ".join(["10.0.0.9"] * 100_000)  # all "trusted": the walk is capped
    found = client_address(scope("10.0.0.1", "6.6.6.6, " + spoofed), PROXIES)
    assert found == "10.0.0.9"
