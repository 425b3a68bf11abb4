"""Whether the server answering on a port is the one this stack started.

Whoever answers on the port we picked is not necessarily our server: another one can take the
port between our check and our server's bind, and ours then dies. A URL is only reported, reused
or called "ours" once its answer is tied to our process group: for Elasticsearch a cluster name
unique to the state dir and the node's pid; for the others the listening socket, found among the
descriptors of our processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Collection
from pathlib import Path

from .state import STATE

# Addresses in /proc/net/tcp{,6} (hex, in host byte order per 32-bit word) whose listeners get
# connections to 127.0.0.1: 127.0.0.1 and 0.0.0.0, and the IPv6 forms Java uses for them.
_REACHES_LOOPBACK = {
    "0100007F",
    "00000000",
    "0000000000000000FFFF00000100007F",
    "00000000000000000000000000000000",
}
_TCP_LISTEN = "0A"
ES_IDENTITY_PATH = "/_nodes/_local/process?filter_path=cluster_name,nodes.*.name,nodes.*.process.id"


def stack_id(state: Path) -> str:
    """A short tag unique to a state dir, so that two stacks on one machine tell each other apart."""
    return hashlib.sha256(str(state).encode()).hexdigest()[:12]


def es_cluster_name(state: Path = STATE) -> str:
    return f"shipper-stack-{stack_id(state)}"


def es_identity(body: str, cluster_name: str, pids: Collection[int]) -> tuple[bool, str]:
    """Whether a `GET /_nodes/_local/process` answer is our node: our cluster name, a pid of ours."""
    try:
        doc = json.loads(body)
        name = doc["cluster_name"]
        node_pids = [int(node["process"]["id"]) for node in doc["nodes"].values()]
    except (ValueError, KeyError, TypeError, AttributeError):
        return False, f"its /_nodes/_local answer is not an Elasticsearch node's: {body[:200]!r}"
    if name != cluster_name:
        return False, f"its cluster is named {name!r}, this stack's is {cluster_name!r}"
    ours = [pid for pid in node_pids if pid in pids]
    if not ours:
        return False, (
            f"it has this stack's cluster name, but its process {node_pids} is not one this stack "
            f"started (ours: {sorted(pids)})"
        )
    return True, f"cluster {name}, node pid {ours[0]}"


def listening_inodes(table: str, port: int) -> set[int]:
    """Inodes of the sockets in a /proc/net/tcp or /proc/net/tcp6 table that listen for 127.0.0.1:port."""
    inodes = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != _TCP_LISTEN:
            continue
        address, _, hex_port = fields[1].partition(":")
        if int(hex_port, 16) == port and address.upper() in _REACHES_LOOPBACK:
            inodes.add(int(fields[9]))
    return inodes


def socket_inodes(pids: Collection[int]) -> tuple[set[int], list[int]]:
    """Inodes of the sockets these processes hold, and the pids whose descriptors could not be read."""
    inodes: set[int] = set()
    unreadable = []
    for pid in pids:
        try:
            entries = list(os.scandir(f"/proc/{pid}/fd"))
        except OSError:
            unreadable.append(pid)
            continue
        for entry in entries:
            with contextlib.suppress(OSError):
                m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(entry.path))
                if m:
                    inodes.add(int(m.group(1)))
    return inodes, unreadable


def listener_verdict(
    port: int, listeners: set[int], held: set[int], unreadable: Collection[int]
) -> tuple[bool, str]:
    """Whether every socket listening for 127.0.0.1:port is one that our processes hold."""
    if not listeners:
        return False, f"nothing listens on 127.0.0.1:{port}"
    if listeners <= held:
        return True, f"the socket listening on 127.0.0.1:{port} is held by a process this stack started"
    if unreadable:
        return False, (
            f"cannot tell who listens on 127.0.0.1:{port}: /proc/<pid>/fd of {sorted(unreadable)} "
            "is not readable"
        )
    return False, f"the socket listening on 127.0.0.1:{port} belongs to a process this stack did not start"


def listener_identity(url: str, pids: Collection[int]) -> tuple[bool, str]:
    """Whether the socket listening on the port of `url` is held by one of `pids`."""
    port = urllib.parse.urlsplit(url).port or 80
    listeners: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            listeners |= listening_inodes(Path(table).read_text(), port)
    held, unreadable = socket_inodes(pids)
    return listener_verdict(port, listeners, held, unreadable)
