"""The serve group's assignor: the range assignor, plus a table of who serves which partition.

Keyed models are answered only by the worker that owns the key's home partition; a worker asked
over HTTP for a key it does not own answers 421 with the owner's address. Every worker learns
that address the way Faust's own assignor spreads its table of hosts: each member puts its web
address (``web.advertised``, or ``web.host:web.port``) in the user data of its subscription, and
the group's leader, which sees every member's, hands the table partition -> address of
``features`` to every member with its partitions. The assignment itself is the range assignor's
(partition *p* of every subscribed topic on one worker), under the same protocol name, so a group
that mixes releases still agrees on it (a member that tells no address is left out of the table).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

from stream_app.core.owners import decode_table, encode_table, owner_table

__all__ = ["OwnersAssignor"]


class OwnersAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """Range assignment; the leader adds who serves each partition of ``topic``."""

    name = RangePartitionAssignor.name
    version = RangePartitionAssignor.version

    def __init__(self, address: str, topic: str) -> None:
        self.address = address
        self.topic = topic
        self.table: dict[int, str] = {}
        """Partition of ``topic`` -> its owner's address, as of the last assignment."""

    def metadata(self, topics: Iterable[str]) -> Any:
        """Subscribe to ``topics`` and tell this worker's address."""
        return ConsumerProtocolMemberMetadata(self.version, list(topics), self.address.encode())

    def assign(self, cluster: Any, members: Mapping[str, Any]) -> dict[str, Any]:
        """Assign as the range assignor does; give every member the table of owners."""
        assigned = RangePartitionAssignor.assign(cluster, members)
        addresses = {
            member: bytes(meta.user_data or b"").decode(errors="replace")
            for member, meta in members.items()
        }
        table = owner_table(
            {member: dict(a.assignment) for member, a in assigned.items()}, addresses, self.topic
        )
        data = encode_table(table)
        return {
            member: ConsumerProtocolMemberAssignment(a.version, a.assignment, data)
            for member, a in assigned.items()
        }

    def on_assignment(self, assignment: Any) -> None:
        """Keep the table the leader sent with this member's partitions."""
        self.table = decode_table(assignment.user_data)
