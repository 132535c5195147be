"""Which IP addresses a webhook call may connect to (the outbound address policy).

The policy is pure: it judges an address and knows nothing about sockets. The transport
applies it to every address it is about to connect to, after resolution, so the address
checked is the address used.

Decisions worth knowing, beyond the ranges everyone refuses:

- Every IPv6 range that embeds an IPv4 address has that address read out and judged by the
  IPv4 rules; what those refuse, the IPv6 form is refused for too, and the reason names the
  IPv4 address. Beyond that:
- IPv4-mapped IPv6 (``::ffff:a.b.c.d``) *is* the IPv4 address on a dual-stack socket, so it
  is judged exactly as ``a.b.c.d``, allow-list included.
- 6to4 (``2002::/16``) and the well-known NAT64 prefix (``64:ff9b::/96``) carry an IPv4
  address that a relay or gateway will reach on our behalf; they are judged by that embedded
  address (allow-list included), and are otherwise ordinary public addresses.
- IPv4-translated IPv6 (``::ffff:0:a.b.c.d``, SIIT, RFC 2765), IPv4-compatible IPv6
  (``::a.b.c.d``, deprecated by RFC 4291), the local-use NAT64 prefix ``64:ff9b:1::/48``
  (RFC 8215: it only exists inside an operator's own network) and Teredo (``2001::/32``,
  whose client address is stored inverted) have no legitimate use as a webhook destination
  and are refused whatever they embed. Only an allow-listed IPv6 network opens them: an
  allow-listed IPv4 network does not reach through them.
- Anything Python's ``ipaddress`` does not consider globally routable is refused as a
  backstop, so a special-purpose range missing from the table below still fails closed.
- An allow-listed network wins over every rule, including the metadata addresses; operators
  who allow ``169.254.0.0/16`` get what they asked for.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from docuhooks.core.networks import InvalidNetworkSetting, IPNetwork, parse_networks

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = [
    "AddressPolicy",
    "BlockedAddress",
    "IPAddress",
    "IPNetwork",
    "InvalidNetworkSetting",
    "parse_ip_host",
]


class BlockedAddress(Exception):
    """The policy refuses to connect to an address; ``reason`` says why in plain words."""

    def __init__(self, address: str, reason: str) -> None:
        # The reason is what the delivery log records: it says what an operator can do.
        reason = f"{reason}{REFUSAL_REMEDY}"
        super().__init__(reason)
        self.address = address
        self.reason = reason


#: Appended to every refusal, as the attempt's recorded error.
REFUSAL_REMEDY = (
    "; the outbound address policy refuses it: for a receiver on this machine, run the "
    "server with `docuhooks serve --dev` (development only), or let its network through "
    "with the allowed_networks setting (DOCUHOOKS_ALLOWED_NETWORKS=127.0.0.1/32)"
)


# Named individually so the refusal says "cloud metadata" rather than "link-local": that is
# the word an operator searches for when a webhook to 169.254.169.254 is refused.
_METADATA_ADDRESSES: dict[IPAddress, str] = {
    ipaddress.ip_address("169.254.169.254"): "AWS, GCP, Azure, OpenStack",
    ipaddress.ip_address("169.254.170.2"): "AWS ECS task",
    ipaddress.ip_address("100.100.100.200"): "Alibaba Cloud",
    ipaddress.ip_address("192.0.0.192"): "Oracle Cloud",
    ipaddress.ip_address("fd00:ec2::254"): "AWS IPv6",
}


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), what) for cidr, what in pairs)


# Order matters only for the wording of the reason: the first match is reported.
_BLOCKED_V4 = _nets(
    ("0.0.0.0/32", "an unspecified address"),
    ("0.0.0.0/8", "in 0.0.0.0/8 ('this network')"),
    ("127.0.0.0/8", "a loopback address"),
    ("10.0.0.0/8", "a private address (RFC 1918)"),
    ("172.16.0.0/12", "a private address (RFC 1918)"),
    ("192.168.0.0/16", "a private address (RFC 1918)"),
    ("100.64.0.0/10", "a carrier-grade NAT address (RFC 6598)"),
    ("169.254.0.0/16", "a link-local address"),
    ("192.0.0.0/24", "an IETF protocol assignment (RFC 6890)"),
    ("192.0.2.0/24", "a documentation address (RFC 5737)"),
    ("198.51.100.0/24", "a documentation address (RFC 5737)"),
    ("203.0.113.0/24", "a documentation address (RFC 5737)"),
    ("192.88.99.0/24", "a 6to4 relay anycast address (RFC 7526)"),
    ("198.18.0.0/15", "a benchmarking address (RFC 2544)"),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
)

_BLOCKED_V6 = _nets(
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("100::/64", "a discard-only address (RFC 6666)"),
    ("2001:2::/48", "a benchmarking address (RFC 5180)"),
    ("2001:db8::/32", "a documentation address (RFC 3849)"),
    ("3fff::/20", "a documentation address (RFC 9637)"),
    ("2001:10::/28", "an ORCHID address (deprecated)"),
    ("2001:20::/28", "an ORCHIDv2 address"),
    ("fc00::/7", "a unique local (private) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address (deprecated)"),
    ("ff00::/8", "a multicast address"),
)


def _low_32_bits(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


def _sixtofour(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)


def _local_nat64(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    # RFC 6052 with a /48 prefix: two bytes of the IPv4 address before the reserved "u" byte
    # (bits 64-71), two after it.
    value = int(ip)
    return ipaddress.IPv4Address(((value >> 64) & 0xFFFF) << 16 | (value >> 40) & 0xFFFF)


def _teredo_client(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    # The client's public address is the last 32 bits, inverted (RFC 4380).
    return ipaddress.IPv4Address((int(ip) & 0xFFFFFFFF) ^ 0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class _Embedding:
    """An IPv6 range that carries an IPv4 address, and how to read it out."""

    network: ipaddress.IPv6Network
    what: str
    extract: Callable[[ipaddress.IPv6Address], ipaddress.IPv4Address]
    #: Refused whatever it embeds (no legitimate webhook destination lies there).
    refused: bool


# ::/96 contains ::/128 and ::1/128, which _BLOCKED_V6 names better, so they are left to it.
_EMBEDDINGS = (
    _Embedding(
        ipaddress.IPv6Network("::ffff:0:0:0/96"),
        "an IPv4-translated IPv6 address (SIIT, RFC 2765)",
        _low_32_bits,
        refused=True,
    ),
    _Embedding(
        ipaddress.IPv6Network("::/96"),
        "an IPv4-compatible IPv6 address (deprecated, RFC 4291)",
        _low_32_bits,
        refused=True,
    ),
    _Embedding(
        ipaddress.IPv6Network("64:ff9b::/96"), "a NAT64 address", _low_32_bits, refused=False
    ),
    _Embedding(
        ipaddress.IPv6Network("64:ff9b:1::/48"),
        "a local-use NAT64 address (RFC 8215)",
        _local_nat64,
        refused=True,
    ),
    _Embedding(ipaddress.IPv6Network("2002::/16"), "a 6to4 address", _sixtofour, refused=False),
    _Embedding(
        ipaddress.IPv6Network("2001::/32"),
        "a Teredo tunnelling address",
        _teredo_client,
        refused=True,
    ),
)
_UNSPECIFIED_OR_LOOPBACK = ipaddress.IPv6Network("::/127")


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Refuses non-public destinations unless an allow-listed network contains them."""

    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_setting(cls, text: str | None) -> AddressPolicy:
        """Parse comma-separated CIDRs, e.g. ``"127.0.0.0/8, ::1/128"``; empty means none."""
        return cls(allowed_networks=parse_networks(text or ""))

    @classmethod
    def allowing(cls, networks: Iterable[str | IPNetwork]) -> AddressPolicy:
        return cls(allowed_networks=tuple(ipaddress.ip_network(n) for n in networks))

    def is_allowed_network(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allowed_networks)

    def blocked_reason(self, ip: str | IPAddress) -> str | None:
        """Why ``ip`` is refused, or None when the policy lets it through."""
        address = _as_address(ip)
        reason = self._reason(address)
        if reason is None:
            return None
        shown = str(ip) if isinstance(ip, str) else str(address)
        return f"{shown} is {reason}"

    def is_blocked(self, ip: str | IPAddress) -> bool:
        return self.blocked_reason(ip) is not None

    def check(self, ip: str | IPAddress) -> None:
        """Raise :class:`BlockedAddress` unless the policy lets ``ip`` through."""
        reason = self.blocked_reason(ip)
        if reason is not None:
            raise BlockedAddress(str(ip), reason)

    def _reason(self, ip: IPAddress) -> str | None:
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.scope_id is not None:
                ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
            mapped = ip.ipv4_mapped
            if mapped is not None:
                inner = self._reason(mapped)
                return None if inner is None else f"an IPv4-mapped form of {mapped}, {inner}"
        if self.is_allowed_network(ip):
            return None
        metadata = _METADATA_ADDRESSES.get(ip)
        if metadata is not None:
            return f"a cloud metadata address ({metadata})"
        if isinstance(ip, ipaddress.IPv6Address):
            embedded = self._embedded_reason(ip)
            if embedded is not None:
                return embedded or None
        for network, what in _BLOCKED_V4 if ip.version == 4 else _BLOCKED_V6:
            if ip in network:
                return what
        if not ip.is_global:
            return "not a globally routable address"
        return None

    def _embedded_reason(self, ip: ipaddress.IPv6Address) -> str | None:
        """The verdict on an IPv6 address that embeds IPv4: a reason to refuse it, "" to let
        it through, or None when `ip` embeds nothing and the IPv6 rules decide."""
        if ip in _UNSPECIFIED_OR_LOOPBACK:
            return None
        for embedding in _EMBEDDINGS:
            if ip not in embedding.network:
                continue
            inner_ip = embedding.extract(ip)
            inner = self._reason(inner_ip)
            if inner is not None:
                return f"{embedding.what} embedding {inner_ip}, {inner}"
            if embedding.refused:
                return f"{embedding.what}, embedding {inner_ip}"
            return ""
        return None


def _as_address(ip: str | IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return ip
    parsed = parse_ip_host(ip)
    if parsed is None:
        raise ValueError(f"{ip!r} is not an IP address")
    return parsed


def parse_ip_host(host: str) -> IPAddress | None:
    """The IP address a URL host names, in any spelling a resolver would accept; else None.

    ``ipaddress`` only accepts dotted quads, but ``inet_aton`` (and so libc's
    ``getaddrinfo``, curl, and browsers) also accepts ``2130706433``, ``0177.0.0.1``,
    ``0x7f.1`` and ``127.1``. A policy that only understood the strict form could be walked
    around with these, so they are read the way ``inet_aton`` reads them.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(unquote(text))
        except ValueError:
            return None
    # A single trailing dot is how a fully-qualified name is written; resolvers ignore it.
    if text.endswith("."):
        text = text[:-1]
    return _inet_aton(text)


def _inet_aton(text: str) -> ipaddress.IPv4Address | None:
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        number = _inet_aton_part(part)
        if number is None:
            return None
        numbers.append(number)
    # The last part fills all the bytes the earlier parts did not: a, a.b (8.24), a.b.c (8.8.16).
    *leading, last = numbers
    if any(n > 0xFF for n in leading) or last >= 1 << (8 * (4 - len(leading))):
        return None
    value = last
    for index, number in enumerate(leading):
        value |= number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _inet_aton_part(part: str) -> int | None:
    # Checked by pattern first: int() would also take "+1", "1_0" and non-ASCII digits.
    lowered = part.lower()
    if _HEX_PART.fullmatch(lowered):
        # "0x" alone is zero for inet_aton and for the WHATWG URL parser alike.
        return int(lowered[2:] or "0", 16)
    if _OCTAL_PART.fullmatch(lowered):
        return int(lowered, 8)
    if _DECIMAL_PART.fullmatch(lowered):
        return int(lowered, 10)
    return None


_HEX_PART = re.compile(r"0x[0-9a-f]*")
_OCTAL_PART = re.compile(r"0[0-7]+")
_DECIMAL_PART = re.compile(r"0|[1-9][0-9]*")
