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
