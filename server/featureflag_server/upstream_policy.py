"""Where a fork's upstream may point: host normalisation, the allow-list and the deny rules.

Anyone with an API token can create a fork, and fork URLs are public, so an upstream is
a request the service makes on a stranger's behalf. The rules, checked when a fork is
written (:meth:`UpstreamPolicy.url_problem`, from :mod:`featureflag_server.forks`), by
forward-auth (:meth:`UpstreamPolicy.resolved_problem`), and again when
the proxy connects, after DNS (:meth:`UpstreamPolicy.address_problem`, from
:mod:`featureflag_server.upstream_aiohttp`):

- Hosts are compared after IDNA/UTS-46 mapping (:func:`normalise_host`, with the ``idna``
  package httpx already depends on): ``loop`` + U+3002, U+FF0E or U+FF61 + ``localhost``
  is ``loop.localhost``, which is what the HTTP client would connect to.
- An upstream under the fork domain is refused (requests would loop through the service).
- Link-local addresses (169.254.0.0/16, fe80::/10) and cloud metadata endpoints
  (169.254.169.254, fd00:ec2::254, ``metadata.google.internal``) are always refused.
- The service's own listening address and port is always refused (a loop).
- With ``--fork-upstreams`` set, the upstream's host and port must match one of its
  patterns (see :class:`HostPattern`).

One policy per app, built from its settings (``Settings.upstream_policy()``, by
``featureflag_server.app``) and handed to the forks layer, forward-auth and the proxy's
client; ``UpstreamPolicy()`` refuses only what is always refused.
See docs/security.md, "The fork proxy and the ingress path".
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import idna

__all__ = [
    "METADATA_HOSTS",
    "HostPattern",
    "UpstreamPolicy",
    "normalise_host",
    "parse_patterns",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})
"""Names of cloud metadata services (GCP, and the short names some clouds resolve)."""
_METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
_ANY = frozenset({ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::")})


def normalise_host(host: str) -> str:
    """*host* as a client connects to it: IDNA/UTS-46 mapped, lowercase ASCII, no
    trailing dot, IPv6 without brackets. Raises ValueError for a host no client accepts.

    >>> normalise_host("Loop\\u3002localhost.")
    'loop.localhost'
    """
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        return str(ipaddress.ip_address(host[1:-1]))
    if ":" in host:
        return str(ipaddress.ip_address(host))
    try:
        mapped = idna.uts46_remap(host, std3_rules=False, transitional=False)
    except idna.IDNAError as exc:
        raise ValueError(f"the host {host!r} is not a valid host name ({exc})") from None
    mapped = mapped.rstrip(".")
    if mapped.isascii():
        return mapped.lower()
    try:
        return idna.encode(mapped, uts46=False).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"the host {host!r} is not a valid host name ({exc})") from None


def _address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _legacy_ipv4(host: str) -> bool:
    """``127.1``, ``2130706433``, ``0x7f.0.0.1``: forms C's resolver maps onto an address."""
    if _address(host) is not None or not host or not all(c in "0123456789abcdefx." for c in host):
        return False
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class HostPattern:
    """One ``--fork-upstreams`` entry: ``HOST`` or ``HOST:PORT``.

    HOST is a name (``app.internal``), ``*.SUFFIX`` (any name under SUFFIX, not SUFFIX
    itself), ``*`` (any host), an address (``127.0.0.1``, ``[::1]``) or a network
    (``10.0.0.0/8``). PORT is a number or ``*``; without one, any port.
    """

    host: str
    port: int | None  # None: any port
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        """The pattern *text*; ValueError saying how to spell it."""
        text = text.strip()
        port: int | None = None
        host = text
        if text.startswith("["):
            inside, _, rest = text[1:].partition("]")
            host, port_text = inside, rest.removeprefix(":") if rest.startswith(":") else None
            if rest and port_text is None:
                raise ValueError(f"{text!r}: write [IPv6]:PORT")
        else:
            name, sep, port_text_ = text.rpartition(":")
            host, port_text = (name, port_text_) if sep else (text, None)
        if port_text is not None and port_text != "*":
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ValueError(f"{text!r}: the port must be a number or *")
            port = int(port_text)
        if not host:
            raise ValueError(f"{text!r}: give a host, *.domain, an address or a network")
        if "/" in host:
            try:
                return cls(host, port, ipaddress.ip_network(host, strict=False))
            except ValueError:
                raise ValueError(f"{text!r}: {host!r} is not a network like 10.0.0.0/8") from None
        if host == "*":
            return cls("*", port)
        if host.startswith("*."):
            return cls("*." + normalise_host(host[2:]), port)
        return cls(normalise_host(host), port)

    def matches(self, host: str, port: int) -> bool:
        """Whether the normalised *host* and *port* fit this pattern."""
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            address = _address(host)
            return address is not None and address in self.network
        if self.host == "*":
            return True
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        return host == self.host


_MAX_ANSWERS = 1024


def parse_patterns(text: str) -> tuple[HostPattern, ...]:
    """``--fork-upstreams``: comma-separated :class:`HostPattern` entries."""
    return tuple(HostPattern.parse(part) for part in text.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class UpstreamPolicy:
    """Where forks may point. *allow* empty means any host the deny rules let through;
    *listening* is the service's own ``(address, port)`` (port 0: not known)."""

    allow: tuple[HostPattern, ...] = ()
    listening: tuple[tuple[str, int], ...] = ()
    _local: frozenset[IPAddress] = field(default=frozenset(), compare=False)
    # address_problem's answers (the proxy asks on every new connection), bounded.
    _answers: dict[tuple[str, int], str | None] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def create(
        cls, allow: str | Iterable[HostPattern] = "", listening: Iterable[tuple[str, int]] = ()
    ) -> UpstreamPolicy:
        """A policy from ``--fork-upstreams`` text (or patterns) and the listening sockets."""
        patterns = parse_patterns(allow) if isinstance(allow, str) else tuple(allow)
        sockets: list[tuple[str, int]] = []
        for host, port in listening:
            host = normalise_host(host)
            # A name (--host localhost) listens on what it resolves to, at start-up.
            sockets += [(a, port) for a in _resolve(host)] if _address(host) is None else []
            sockets.append((host, port))
        return cls(patterns, tuple(dict.fromkeys(sockets)), _local_addresses())

    def _own_port(self, address: IPAddress, port: int) -> bool:
        for host, own_port in self.listening:
            if own_port != port or own_port == 0:
                continue
            own = _address(host)
            if own is None:
                continue  # a name: its addresses are listed beside it
            if own == address:
                return True
            if own in _ANY and (address.is_loopback or address in self._local):
                return True
            if own.is_loopback and address.is_loopback:
                return True  # any loopback address at our port: refuse rather than guess
        return False

    def address_problem(self, address: str, port: int) -> str | None:
        """Why the proxy must not connect to *address*:*port* (after DNS), or None."""
        key = (address, port)
        if key in self._answers:
            return self._answers[key]
        if len(self._answers) >= _MAX_ANSWERS:
            self._answers.clear()
        answer = self._answers[key] = self._address_problem(address, port)
        return answer

    def _address_problem(self, address: str, port: int) -> str | None:
        ip = _address(address)
        if ip is None:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip in _METADATA_ADDRESSES:
            return f"{ip} is a cloud metadata address"
        if any(ip in net for net in _LINK_LOCAL):
            return f"{ip} is a link-local address"
        if self._own_port(ip, port):
            return f"{ip}:{port} is this service itself, so requests would loop"
        return None

    def url_problem(self, url: str, fork_domain: str) -> str | None:
        """Why the upstream URL *url* is refused (its host, before DNS), or None."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
            host = normalise_host(parts.hostname or "")
        except ValueError as exc:
            return f"the upstream's host cannot be used: {exc}"
        domain = normalise_host(fork_domain)
        # The bare domain may be another app on another port; a fork host never is.
        if host.endswith("." + domain):
            return (
                f"upstream {host!r} is under the fork domain {domain!r}, so requests would "
                "loop through this service; point it at the app itself "
                "(e.g. http://127.0.0.1:5000)"
            )
        if _legacy_ipv4(host):
            return f"write the address {host!r} in full dotted form (like 10.0.0.5)"
        if host in METADATA_HOSTS:
            return f"{host!r} is a cloud metadata service; forks may not point at it"
        problem = self.address_problem(host, port)
        if problem is None and host == "localhost":
            problem = self.address_problem("127.0.0.1", port)
        if problem is not None:
            return f"forks may not point there: {problem}"
        if self.allow and not any(p.matches(host, port) for p in self.allow):
            return (
                f"{host}:{port} is not in the service's --fork-upstreams allow-list; "
                "ask the operator to add it"
            )
        return None

    async def resolved_problem(self, url: str, fork_domain: str) -> str | None:
        """:meth:`url_problem`, then the same rule on every address the host resolves to
        now (for the gateway path, where the service does not make the connection)."""
        problem = self.url_problem(url, fork_domain)
        if problem is not None:
            return problem
        parts = urlsplit(url)
        host = normalise_host(parts.hostname or "")
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        if _address(host) is not None:
            return None
        try:
            async with asyncio.timeout(_RESOLVE_TIMEOUT):
                loop = asyncio.get_running_loop()
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            # Fail closed: what it resolves to was not checked.
            return f"{host} did not resolve within {_RESOLVE_TIMEOUT:g} s, so it was not checked"
        except OSError:
            return None  # no address: the gateway will fail to connect, and say so
        for info in infos:
            problem = self.address_problem(str(info[4][0]).partition("%")[0], port)
            if problem is not None:
                return f"{host} resolves to {problem}"
        return None


def _resolve(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return [str(info[4][0]).partition("%")[0] for info in infos]


@functools.cache
def _local_addresses() -> frozenset[IPAddress]:
    """This machine's addresses that its resolver knows (for a service bound to 0.0.0.0)."""
    found: set[IPAddress] = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            address = _address(str(info[4][0]).partition("%")[0])
            if address is not None:
                found.add(address)
    except OSError:
        pass
    return frozenset(found)


_RESOLVE_TIMEOUT = 2.0  # seconds: a slow DNS must not hold a gateway's auth request
