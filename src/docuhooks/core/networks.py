"""Reading a list of IP networks from a setting (`allowed_networks`).

Here, in the core, so that the settings refuse an entry that is not a network when they
load, with the same parser the outbound address policy (`delivery.address_policy`) uses.
"""

from __future__ import annotations

import ipaddress

__all__ = ["IPNetwork", "InvalidNetworkSetting", "parse_networks"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class InvalidNetworkSetting(ValueError):
    """``DOCUHOOKS_ALLOWED_NETWORKS`` (or an equivalent setting) could not be parsed."""


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """The comma-separated networks in `text` (CIDRs; an empty entry is skipped). Raises
    InvalidNetworkSetting naming the first entry that is not a network, with the network
    it may have meant when only its host bits are set."""
    networks: list[IPNetwork] = []
    for position, raw in enumerate(text.split(","), start=1):
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=True))
        except ValueError as exc:
            hint = ""
            try:
                loose = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                pass
            else:
                hint = f"; did you mean {loose}?"
            raise InvalidNetworkSetting(
                f"allowed networks, entry {position} ({entry!r}): {exc}{hint}"
            ) from None
    return tuple(networks)
