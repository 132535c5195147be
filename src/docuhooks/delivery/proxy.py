"""Which outbound calls go through an egress proxy, and which proxy.

Corporate installations often let nothing out but an HTTP proxy. The proxy comes from the
``outbound_proxy`` setting or, when that is empty, from the variables curl and requests read
(``https_proxy``/``HTTPS_PROXY`` for https webhooks, ``http_proxy``/``HTTP_PROXY`` for http
ones, the lower-case spelling first) with ``no_proxy``/``NO_PROXY`` naming the exceptions.

The proxy is operator configuration, so its own address is not judged by the address policy
(it usually sits on a private network). What the policy judges is still the webhook's final
destination: the transport resolves the webhook's host itself and asks the proxy for the
judged *address* (``CONNECT 203.0.113.7:443``), never for the name, so the proxy can neither
be used to reach a refused address nor resolve the name to a different one.

A webhook whose URL names ``localhost`` or a loopback address never goes through the proxy:
the proxy's loopback is not ours (Go's HTTP client makes the same exception).
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from yarl import URL

from docuhooks.delivery.address_policy import IPAddress, IPNetwork, parse_ip_host

__all__ = ["Proxy", "ProxyRoutes"]


@dataclass(frozen=True, slots=True)
class Proxy:
    """One forward proxy: where it listens, and the credentials to present (never shown:
    ``repr`` and error messages name the proxy by host and port only)."""

    host: str
    port: int
    #: The ``Proxy-Authorization`` value, when the proxy URL carried credentials.
    authorization: str | None = field(default=None, repr=False, compare=True)

    @property
    def address(self) -> str:
        """``host:port``, for messages."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def from_url(cls, value: str, *, source: str) -> Proxy:
        """Read a proxy URL (``http://[user:password@]host[:port]``; a bare ``host:port``
        means http, as curl reads it). Raises ValueError naming ``source``, the setting or
        variable it came from, without repeating the URL (it may hold a password)."""
        text = value.strip()
        if "://" not in text:
            text = "http://" + text
        try:
            url = URL(text)
            port = url.port
        except ValueError:
            # Not the parser's words: they may quote the URL, and with it a password.
            raise ValueError(
                f"{source} is not a proxy URL (expected http://[user:password@]host:port)"
            ) from None
        if url.scheme != "http":
            raise ValueError(
                f"{source}: only http:// proxies are supported (https webhooks still use "
                f"TLS end to end, through a CONNECT tunnel), not {url.scheme}://"
            )
        if not url.raw_host or port is None:
            raise ValueError(f"{source} names no proxy host")
        if url.path not in ("", "/") or url.query_string:
            raise ValueError(f"{source}: a proxy URL has no path or query")
        authorization = None
        if url.raw_user is not None:
            pair = f"{unquote(url.raw_user)}:{unquote(url.raw_password or '')}"
            authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        return cls(url.raw_host, port, authorization)


def _bypassed(entries: tuple[str, ...], host: str, port: int) -> bool:
    """Whether a ``no_proxy`` list names ``host`` (curl's rules: ``*`` is everything; a name
    matches itself and its subdomains, with or without a leading dot; an address or a
    network matches an address host; ``name:port`` matches that port only)."""
    name = host.lower().rstrip(".")
    literal = parse_ip_host(name)
    for entry in entries:
        if entry == "*":
            return True
        wanted_port = None
        bare = entry
        if entry.startswith("["):  # [v6]:port or [v6]
            bare, _, rest = entry[1:].partition("]")
            wanted_port = rest[1:] if rest.startswith(":") else None
        elif entry.count(":") == 1:
            bare, _, wanted_port = entry.partition(":")
        if wanted_port is not None and wanted_port != str(port):
            continue
        network = _network(bare)
        if network is not None:
            if literal is not None and literal in network:
                return True
            continue
        bare = bare.lstrip(".").rstrip(".")
        if bare and (name == bare or name.endswith("." + bare)):
            return True
    return False


def _network(entry: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class ProxyRoutes:
    """The proxy for each scheme, and the hosts that bypass it."""

    http: Proxy | None = None
    https: Proxy | None = None
    no_proxy: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.http is not None or self.https is not None

    def for_destination(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy a call to ``scheme://host:port`` goes through, or None for direct."""
        proxy = self.https if scheme == "https" else self.http
        if proxy is None:
            return None
        name = host.lower().rstrip(".")
        literal = parse_ip_host(name)
        if name == "localhost" or name.endswith(".localhost"):
            return None
        if literal is not None and _loopback(literal):
            return None
        if _bypassed(self.no_proxy, host, port):
            return None
        return proxy

    @classmethod
    def configure(
        cls, proxy_setting: str, no_proxy_setting: str, environ: Mapping[str, str]
    ) -> ProxyRoutes:
        """The routes from the settings when ``outbound_proxy`` is set (the environment is
        then not read at all), else from the environment. Raises ValueError for a proxy
        URL that cannot be used."""
        if proxy_setting.strip():
            proxy = Proxy.from_url(proxy_setting, source="DOCUHOOKS_OUTBOUND_PROXY")
            return cls(proxy, proxy, _entries(no_proxy_setting))

        def variable(name: str) -> tuple[str, str] | None:
            for spelling in (name, name.upper()):
                value = environ.get(spelling, "").strip()
                if value:
                    return spelling, value
            return None

        found: dict[str, Proxy | None] = {}
        for scheme in ("http", "https"):
            setting = variable(f"{scheme}_proxy")
            found[scheme] = Proxy.from_url(setting[1], source=setting[0]) if setting else None
        no_proxy = variable("no_proxy")
        return cls(found["http"], found["https"], _entries(no_proxy[1] if no_proxy else ""))


def _loopback(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _entries(value: str) -> tuple[str, ...]:
    return tuple(e.strip().lower() for e in value.replace(" ", ",").split(",") if e.strip())
