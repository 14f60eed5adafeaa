"""Who may steer: the hosts OSC is accepted from, and the token the control page asks for.

Both are off by default (any host may send OSC, the page is open), as a show on a private
network expects. ``--osc-allow CIDR`` (repeatable) keeps OSC from other hosts out, wherever it
arrives (UDP, TCP, the OSCQuery WebSocket); ``--control-token TOKEN`` makes the page, its preview
and the WebSocket ask for the token. Kept free of heavy imports: the CLI validates with it before
torch loads.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Sequence

from engine.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """``192.168.1.0/24``, ``10.0.0.5`` (one host) or ``::1`` as networks; ConfigError names a bad one."""
    networks: list[Network] = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"--osc-allow {spec!r}: not an address or network (write e.g. 192.168.1.0/24"
                " or 10.0.0.5)"
            ) from None
    return tuple(networks)


def host_allowed(host: str, networks: Sequence[Network]) -> bool:
    """True when ``networks`` is empty (open) or holds ``host``; False for an unreadable host."""
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in networks)


def token_matches(expected: str | None, offered: str | None) -> bool:
    """True when no token is required, or ``offered`` is it (compared in constant time)."""
    if expected is None:
        return True
    if offered is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), offered.encode("utf-8"))


def describe_networks(networks: Sequence[Network]) -> str:
    """How the log names an allow-list: ``any host`` or the networks."""
    return "any host" if not networks else ", ".join(str(n) for n in networks)


def interface_ips() -> list[str]:
    """This machine's IPv4 addresses other than loopback (for logs and advertising)."""
    import ifaddr  # zeroconf's own dependency

    return [
        str(ip.ip)
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if ip.is_IPv4 and not str(ip.ip).startswith("127.")
    ]


def exposure(
    host: str,
    osc_port: int,
    http_port: int | None,
    allow: Sequence[Network],
    token: bool,
) -> list[str]:
    """What listens where and what guards it, in words, for the start-up log."""
    wildcard = host in ("", "0.0.0.0", "::")
    ips = interface_ips() if wildcard else []
    where = (
        f"all interfaces ({', '.join(ips)})" if ips else "all interfaces"
    ) if wildcard else host  # fmt: skip
    shown = ips[0] if ips else ("127.0.0.1" if wildcard else host)
    guard = (
        f"only from {describe_networks(allow)}"
        if allow
        else "from any host that reaches it (no --osc-allow)"
    )
    lines = [f"listening: OSC on UDP port {osc_port}, {where}; steering {guard}"]
    if http_port is not None:
        page = "asks for the token" if token else "is open to anyone (no --control-token)"
        lines.append(
            f"listening: control room http://{shown}:{http_port}/ui/ with OSCQuery and its"
            f" WebSocket on port {http_port}, {where}; the page {page}"
        )
    return lines
