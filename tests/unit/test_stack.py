"""The pure parts of scripts/stack: how it tells its own servers from someone else's, and how it
picks a port. scripts/stack is a stdlib script without a .py name, so it is loaded from its path."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
from collections.abc import Collection
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_stack() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("scripts_stack", str(REPO / "scripts" / "stack"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up while the file runs
    loader.exec_module(module)
    return module


stack = load_stack()


# --- Elasticsearch: GET /_nodes/_local/process?filter_path=cluster_name,nodes.*.name,nodes.*.process.id


def nodes_answer(cluster: str, pid: int) -> str:
    return json.dumps(
        {"cluster_name": cluster, "nodes": {"t1P1cHMsQnWH5hEZMpNTJA": {"name": "n", "process": {"id": pid}}}}
    )


def test_es_node_with_our_cluster_name_and_a_pid_of_our_group_is_ours() -> None:
    ours, why = stack.es_identity(nodes_answer("shipper-stack-abc", 4242), "shipper-stack-abc", {4200, 4242})
    assert ours
    assert why == "cluster shipper-stack-abc, node pid 4242"


def test_es_node_of_another_cluster_is_not_ours() -> None:
    ours, why = stack.es_identity(nodes_answer("docker-cluster", 4242), "shipper-stack-abc", {4242})
    assert not ours
    assert why == "its cluster is named 'docker-cluster', this stack's is 'shipper-stack-abc'"


def test_es_node_with_our_name_but_another_process_is_not_ours() -> None:
    # e.g. a second checkout whose state dir has the same path, or a server left over by a lost pid file
    ours, why = stack.es_identity(nodes_answer("shipper-stack-abc", 999), "shipper-stack-abc", {4200, 4242})
    assert not ours
    assert why == (
        "it has this stack's cluster name, but its process [999] is not one this stack started "
        "(ours: [4200, 4242])"
    )


@pytest.mark.parametrize(
    "body",
    [
        '{"status": "green"}',  # a health-only impostor
        '{"cluster_name": "shipper-stack-abc", "nodes": {"x": {"name": "n"}}}',  # no process section
        "<html><body>It works!</body></html>",
        "",
    ],
)
def test_an_answer_that_is_not_a_nodes_response_is_not_ours(body: str) -> None:
    ours, why = stack.es_identity(body, "shipper-stack-abc", {4242})
    assert not ours
    assert why.startswith("its /_nodes/_local answer is not an Elasticsearch node's: ")


def test_cluster_name_is_stable_per_state_dir_and_differs_between_them() -> None:
    a = stack.es_cluster_name(Path("/var/tmp/shipper-stack-1"))
    assert a == stack.es_cluster_name(Path("/var/tmp/shipper-stack-1"))
    assert a != stack.es_cluster_name(Path("/var/tmp/shipper-stack-2"))
    assert a.startswith("shipper-stack-")
    assert len(a) == len("shipper-stack-") + 12


# --- Others (MLflow): the socket listening on the port must be held by our process group

# Hand-written in the kernel's format: an IPv4 listener on 127.0.0.1:5000 (inode 47794), one on
# 0.0.0.0:2024, an established connection from port 5000 (not a listener), and a listener on
# 127.0.0.2:5000, which does not receive connections to 127.0.0.1.
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 666 1 0 100 0 0 10 0
   1: 0100007F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 47794 1 0 100 0 0 10 0
   2: 0100007F:1388 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 51000 1 0 20 4 30 10 -1
   3: 0200007F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 51001 1 0 100 0 0 10 0
"""  # noqa: E501
# IPv6 forms as Java binds them: ::ffff:127.0.0.1 port 9200 (inode 43723) and :: port 5000
# (inode 43724); ::1 port 5000 does not receive connections to 127.0.0.1.
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:23F0 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 43723 1 0 100 0 0 10 0
   1: 00000000000000000000000000000000:1388 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 43724 1 0 100 0 0 10 0
   2: 00000000000000000000000001000000:1388 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 43725 1 0 100 0 0 10 0
"""  # noqa: E501


def test_listeners_for_loopback_are_found_in_both_tables() -> None:
    assert stack.listening_inodes(TCP, 5000) == {47794}
    assert stack.listening_inodes(TCP6, 5000) == {43724}
    assert stack.listening_inodes(TCP6, 9200) == {43723}
    assert stack.listening_inodes(TCP, 9200) == set()
    assert stack.listening_inodes(TCP, 2024) == {666}


def test_port_held_by_our_processes_is_ours() -> None:
    ours, why = stack.listener_verdict(5000, {47794}, {47794, 51000, 12}, [])
    assert ours
    assert why == "the socket listening on 127.0.0.1:5000 is held by a process this stack started"


def test_port_held_by_another_process_is_not_ours() -> None:
    ours, why = stack.listener_verdict(5000, {47794}, {12, 13}, [])
    assert not ours
    assert why == "the socket listening on 127.0.0.1:5000 belongs to a process this stack did not start"


def test_a_second_listener_sharing_the_port_makes_it_not_ours() -> None:
    # SO_REUSEPORT lets two servers listen on one port; the kernel would split connections
    assert not stack.listener_verdict(5000, {47794, 43724}, {47794}, [])[0]


def test_nothing_listening_or_unreadable_descriptors_are_not_ours() -> None:
    assert stack.listener_verdict(5000, set(), {47794}, []) == (False, "nothing listens on 127.0.0.1:5000")
    ours, why = stack.listener_verdict(5000, {47794}, set(), [31337])
    assert not ours
    assert why == "cannot tell who listens on 127.0.0.1:5000: /proc/<pid>/fd of [31337] is not readable"


# --- Port choice


def pick(
    *,
    forced: int | None = None,
    previous: int | None = None,
    busy: Collection[int] = (),
    avoid: Collection[int] = (),
    handed_out: list[int] | None = None,
) -> int:
    pool = iter(handed_out or [40001])
    return int(
        stack.pick_port(
            forced=forced,
            previous=previous,
            default=9200,
            is_free=lambda port: port not in busy,
            any_port=lambda: next(pool),
            avoid=avoid,
        )
    )


def test_port_previous_first_then_default_then_any() -> None:
    assert pick(previous=41000) == 41000
    assert pick(previous=41000, busy={41000}) == 9200
    assert pick() == 9200
    assert pick(previous=41000, busy={41000, 9200}) == 40001


def test_port_taken_from_us_is_never_chosen_again() -> None:
    # Another server took 41000 after our check; even if it looks free a moment later, move on.
    assert pick(previous=41000, avoid={41000}) == 9200
    assert pick(previous=41000, avoid={41000}, busy={9200}, handed_out=[41000, 40002]) == 40002


def test_forced_port_is_used_or_refused_never_replaced() -> None:
    assert pick(forced=9999, previous=41000) == 9999
    with pytest.raises(stack.StackError, match=r"^127\.0\.0\.1:9999 is already in use$"):
        pick(forced=9999, busy={9999})
    with pytest.raises(stack.StackError, match=r"^127\.0\.0\.1:9999 is already in use$"):
        pick(forced=9999, avoid={9999})
