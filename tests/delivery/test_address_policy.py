"""The pure address policy. Nothing here opens a socket."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docuhooks.delivery.address_policy import (
    AddressPolicy,
    BlockedAddress,
    InvalidNetworkSetting,
    parse_ip_host,
)

DEFAULT = AddressPolicy()

# (host as written in a URL, words the refusal must contain)
HOSTILE_HOSTS = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.5", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.170.2", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("169.254.0.1", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "this network"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("198.18.0.1", "benchmarking"),
    ("192.0.2.10", "documentation"),
    ("203.0.113.7", "documentation"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("[::1]", "loopback"),
    ("::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1"),
    ("[::ffff:7f00:1]", "IPv4-mapped form of 127.0.0.1"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("::ffff:10.0.0.1", "private"),
    ("::127.0.0.1", "IPv4-compatible"),
    ("::8.8.8.8", "IPv4-compatible"),
    ("fc00::1", "unique local"),
    ("fd12:3456::1", "unique local"),
    ("fe80::1", "link-local"),
    ("fe80::1%25eth0", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("2001::1", "Teredo"),
    ("64:ff9b::10.0.0.5", "NAT64 address embedding 10.0.0.5, a private"),
    ("64:ff9b::169.254.169.254", "cloud metadata"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("2002:7f00:1::", "6to4 address embedding 127.0.0.1, a loopback"),
    ("2002:a9fe:a9fe::", "cloud metadata"),
    ("100::1", "discard-only"),
    # Odd IPv4 spellings that inet_aton, curl and browsers all read as 127.0.0.1 / 10.0.0.1.
    ("2130706433", "loopback"),
    ("0177.0.0.1", "loopback"),
    ("0x7f.1", "loopback"),
    ("0x7F000001", "loopback"),
    ("127.1", "loopback"),
    ("127.0.1", "loopback"),
    ("0177.1", "loopback"),
    ("017700000001", "loopback"),
    ("127.0.0.1.", "loopback"),
    ("0", "unspecified"),
    ("0x", "unspecified"),
    ("10.1", "private"),
    ("167772161", "private"),
    ("0xa9.0xfe.0xa9.0xfe", "cloud metadata"),
    ("2852039166", "cloud metadata"),
]


@pytest.mark.parametrize(("host", "words"), HOSTILE_HOSTS)
def test_hostile_hosts_are_refused_with_a_reason(host: str, words: str) -> None:
    address = parse_ip_host(host)
    assert address is not None, f"{host} should be read as an IP address"
    assert DEFAULT.is_blocked(address)
    with pytest.raises(BlockedAddress) as refused:
        DEFAULT.check(address)
    assert words in refused.value.reason


# Every IPv6 range that embeds an IPv4 address, carrying the metadata address: the refusal names
# the embedded address and why the IPv4 rules refuse it.
EMBEDDED_METADATA = [
    ("[::ffff:0:a9fe:a9fe]", "IPv4-translated"),  # SIIT, ::ffff:0:0:0/96
    ("::ffff:0:169.254.169.254", "IPv4-translated"),
    ("::ffff:169.254.169.254", "IPv4-mapped"),
    ("::169.254.169.254", "IPv4-compatible"),
    ("64:ff9b::a9fe:a9fe", "NAT64"),
    ("64:ff9b:1:a9fe:a9:fe00::", "local-use NAT64"),  # RFC 6052 /48: the u byte is skipped
    ("2002:a9fe:a9fe::1", "6to4"),
    ("2001:0:808:808:0:0:5601:5601", "Teredo"),  # client 169.254.169.254, stored inverted
]


@pytest.mark.parametrize(("host", "kind"), EMBEDDED_METADATA)
def test_every_ipv6_range_embedding_ipv4_is_judged_by_the_ipv4_rules(host: str, kind: str) -> None:
    address = parse_ip_host(host)
    assert address is not None
    reason = DEFAULT.blocked_reason(address)
    assert reason is not None and kind in reason
    assert "169.254.169.254" in reason and "cloud metadata" in reason


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("::ffff:0:8.8.8.8", "IPv4-translated"),
        ("::8.8.8.8", "IPv4-compatible"),
        ("64:ff9b:1:808:8:800::", "local-use NAT64"),
        ("2001:0:808:808:0:0:f7f7:f7f7", "Teredo"),  # client 8.8.8.8
    ],
)
def test_ranges_with_no_use_as_a_destination_are_refused_even_around_a_public_ipv4(
    host: str, kind: str
) -> None:
    reason = DEFAULT.blocked_reason(host)
    assert reason is not None and kind in reason and "embedding 8.8.8.8" in reason


def test_an_ipv4_allow_list_reaches_through_mapped_nat64_and_6to4_only() -> None:
    policy = AddressPolicy.from_setting("169.254.0.0/16")
    for opened in ["::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1"]:
        assert not policy.is_blocked(opened), opened
    for still_refused in ["::ffff:0:a9fe:a9fe", "::a9fe:a9fe", "2001:0:808:808::5601:5601"]:
        assert policy.is_blocked(still_refused), still_refused
    assert not AddressPolicy.from_setting("::ffff:0:0:0/96").is_blocked("::ffff:0:a9fe:a9fe")


def test_there_are_at_least_25_hostile_targets() -> None:
    assert len(HOSTILE_HOSTS) >= 25


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("1.2.3", "1.2.0.3"),
        ("0x01.0x02.0x0304", "1.2.3.4"),
        ("8.8.8.8", "8.8.8.8"),
        ("[2606:4700::1111]", "2606:4700::1111"),
    ],
)
def test_parse_ip_host_reads_inet_aton_spellings(host: str, expected: str) -> None:
    assert parse_ip_host(host) == ipaddress.ip_address(expected)


@pytest.mark.parametrize(
    "host",
    ["example.com", "localhost", "09.0.0.1", "1_0.0.0.1", "+1.2.3.4", "256.1.1.1", "1.2.3.4.5",
     "1.2.3.256", "0x100.1", "1.2.65536", "4294967296", "", ".", "1..2", "0xg", "[::1",
     "\u0661.\u0662.\u0663.\u0664"],
)  # fmt: skip
def test_parse_ip_host_leaves_names_and_garbage_alone(host: str) -> None:
    assert parse_ip_host(host) is None


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_every_spelling_of_an_ipv4_address_reads_the_same(value: int) -> None:
    address = ipaddress.IPv4Address(value)
    a, b, c, d = address.packed
    spellings = [
        str(value),
        hex(value),
        f"0{value:o}",
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"{a}.{b}.{(c << 8) | d}",
        f"{a:#x}.0{b:o}.{c}.{d:#x}",
    ]
    for spelling in spellings:
        assert parse_ip_host(spelling) == address, spelling


@pytest.mark.parametrize(
    "host",
    ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2a00:1450:4001::200e",
     "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::8.8.8.8", "134744072"],
)  # fmt: skip
def test_public_addresses_pass(host: str) -> None:
    address = parse_ip_host(host)
    assert address is not None
    assert DEFAULT.blocked_reason(address) is None
    DEFAULT.check(address)


def test_allow_list_opens_exceptions_and_nothing_more() -> None:
    policy = AddressPolicy.from_setting("127.0.0.0/8, ::1/128,10.1.0.0/16")
    for allowed in ["127.0.0.1", "127.9.9.9", "::1", "10.1.2.3", "::ffff:127.0.0.1", "2130706433"]:
        address = parse_ip_host(allowed)
        assert address is not None
        assert not policy.is_blocked(address), allowed
    for refused in ["10.2.0.1", "192.168.0.1", "169.254.169.254", "::2", "fe80::1"]:
        assert policy.is_blocked(refused), refused


def test_allow_list_can_open_the_metadata_address_when_asked() -> None:
    assert not AddressPolicy.from_setting("169.254.169.254/32").is_blocked("169.254.169.254")
    assert AddressPolicy.from_setting("169.254.169.254/32").is_blocked("169.254.169.253")


def test_allow_list_of_one_family_does_not_open_the_other() -> None:
    policy = AddressPolicy.from_setting("0.0.0.0/0")
    assert not policy.is_blocked("10.0.0.1")
    assert policy.is_blocked("::1")
    assert policy.is_blocked("fd00::1")


def test_empty_setting_allows_nothing_extra() -> None:
    assert AddressPolicy.from_setting("").allowed_networks == ()
    assert AddressPolicy.from_setting(None).allowed_networks == ()
    assert AddressPolicy.from_setting(" , ").allowed_networks == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.1/8", r"entry 1 .*did you mean 10\.0\.0\.0/8"),
        ("127.0.0.0/8,banana", r"entry 2 \('banana'\)"),
        ("10.0.0.0/33", r"entry 1"),
        ("::1/129", r"entry 1"),
    ],
)
def test_bad_allow_list_settings_say_which_entry(text: str, message: str) -> None:
    with pytest.raises(InvalidNetworkSetting, match=message):
        AddressPolicy.from_setting(text)


def test_check_rejects_a_hostname() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        DEFAULT.check("example.com")


def test_policy_is_immutable() -> None:
    with pytest.raises(AttributeError):
        DEFAULT.allowed_networks = ()  # type: ignore[misc]


def test_a_refusal_says_what_an_operator_can_do() -> None:
    """The recorded error of a blocked delivery names the way out, not only the rule."""
    with pytest.raises(BlockedAddress) as refused:
        AddressPolicy().check("127.0.0.1")
    for reason in (refused.value.reason, str(refused.value)):
        assert reason.startswith("127.0.0.1 is a loopback address"), reason
        assert "docuhooks serve --dev" in reason and "allowed_networks" in reason
        assert "DOCUHOOKS_ALLOWED_NETWORKS=" in reason
