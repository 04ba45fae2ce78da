"""Loopback listening sockets, for servers (uvicorn) that are handed a pre-bound socket."""

from __future__ import annotations

import socket


def loopback_listener(backlog: int = 128, port: int = 0) -> socket.socket:
    """A TCP socket listening on 127.0.0.1 (``port`` 0: any free port).

    The protocol is given explicitly: asyncio sets ``TCP_NODELAY`` only on sockets whose
    protocol says TCP, and with protocol 0 every keep-alive answer after the first waits about
    40 ms for the client's delayed ACK (Nagle).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(backlog)
    return sock


def port_in_use(host: str, port: int) -> bool:
    """Whether ``host:port`` cannot be bound now (another process listens there). Port 0 is
    never in use."""
    if port == 0:
        return False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False
