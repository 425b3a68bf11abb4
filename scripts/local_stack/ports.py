"""Which port a server gets."""

from __future__ import annotations

import socket
from collections.abc import Callable, Collection

from .common import StackError


def port_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # The servers set SO_REUSEADDR too, so sockets in TIME_WAIT (left by a server we just
        # stopped) must not make the port look busy. On Linux this still fails on a listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ephemeral_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pick_port(
    *,
    forced: int | None,
    previous: int | None,
    default: int,
    is_free: Callable[[int], bool],
    any_port: Callable[[], int],
    avoid: Collection[int] = (),
) -> int:
    """The port to start a server on: the forced one, else the previous, else the default, else any.

    `avoid` holds ports that a server this stack did not start has just taken from us: such a
    port may look free again a moment later, but is never chosen twice.
    """
    if forced is not None:
        if forced in avoid or not is_free(forced):
            raise StackError(f"127.0.0.1:{forced} is already in use")
        return forced
    # Prefer the port used last time: URLs exported into shells stay valid across restarts.
    for candidate in (previous, default):
        if candidate and candidate not in avoid and is_free(candidate):
            return candidate
    for _ in range(100):
        port = any_port()
        if port not in avoid:
            return port
    raise StackError("the system hands out no free port that was not just taken by another server")
