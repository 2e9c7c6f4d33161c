"""Several mirrors of the same flow share its partitions through a group on the target cluster
(`mm2-workers.<source>.<target>.internal`), as MM2's workers share tasks: every mirror joins;
the group's leader deals the flow's partitions out in turn, and each mirror copies only its
own. A mirror that stops (or dies: after the group's session timeout) has its partitions dealt
again; the one that gets them goes on from the progress recorded on the target. With
`--worker-id`, a restarted mirror takes its place back at once (static membership, KIP-345).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Optional

from fastlog import protocol
from fastlog.client import Client, KafkaError, check
from fastlog.protocol import ErrorCode

log = logging.getLogger(__name__)

PROTOCOL_TYPE = "mirror"
ASSIGNOR = "roundrobin"
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_SECONDS = 1.0
REJOIN = frozenset({ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.ILLEGAL_GENERATION, ErrorCode.NOT_COORDINATOR})

Partition = tuple[str, int]


class WorkGroup:
    def __init__(self, client: Client, group_id: str, instance_id: Optional[str] = None) -> None:
        self.client = client
        self.group_id = group_id
        self.instance_id = instance_id
        self.member_id = ""
        self.generation = -1
        self.leader = False
        self.assigned: Optional[frozenset[Partition]] = None  # None: to join (again)
        self._dealt: frozenset[Partition] = frozenset()  # what the leader dealt out last
        self._heartbeat_at = 0.0

    def partitions(self, wanted: set[Partition]) -> frozenset[Partition]:
        """This mirror's share of `wanted` (the flow's partitions it knows of): joins (again)
        when needed, heartbeats otherwise; the leader deals again when `wanted` grew."""
        if self.assigned is not None and self.leader and not wanted <= self._dealt:
            self.assigned = None  # new partitions: the leader starts a rebalance by joining again
        if self.assigned is None:
            self._join(wanted)
        elif time.monotonic() - self._heartbeat_at >= HEARTBEAT_SECONDS:
            self._heartbeat()
            if self.assigned is None:
                self._join(wanted)
        return self.assigned or frozenset()

    def heartbeat_if_due(self) -> None:
        """Within a long round: keeps the session (a rebalance it reports is joined next round)."""
        if self.assigned is not None and time.monotonic() - self._heartbeat_at >= HEARTBEAT_SECONDS:
            self._heartbeat()

    def leave(self) -> None:
        if not self.member_id:
            return
        L = protocol.LeaveGroupRequest
        try:
            self.client.coordinator(self.group_id).request(L(group_id=self.group_id, members=[L.MemberIdentity(member_id=self.member_id, group_instance_id=self.instance_id)]))
        except Exception as e:  # leaving is a courtesy: the session timeout does it otherwise
            log.debug("leaving %s: %s", self.group_id, e)

    def _heartbeat(self) -> None:
        H = protocol.HeartbeatRequest
        self._heartbeat_at = time.monotonic()
        response = self.client.coordinator(self.group_id).request(
            H(group_id=self.group_id, generation_id=self.generation, member_id=self.member_id, group_instance_id=self.instance_id)
        )
        if response.error_code in REJOIN:
            self.assigned = None
        else:
            check(response.error_code, context=f"heartbeat in {self.group_id}")

    def _join(self, wanted: set[Partition]) -> None:
        J = protocol.JoinGroupRequest
        coordinator = self.client.coordinator(self.group_id)
        for _ in range(3):  # MEMBER_ID_REQUIRED (KIP-394) answers with the id to join with
            response = coordinator.request(J(
                group_id=self.group_id, session_timeout_ms=SESSION_TIMEOUT_MS, rebalance_timeout_ms=SESSION_TIMEOUT_MS,
                member_id=self.member_id, group_instance_id=self.instance_id, protocol_type=PROTOCOL_TYPE,
                protocols=[J.JoinGroupRequestProtocol(name=ASSIGNOR, metadata=b"")],
            ), SESSION_TIMEOUT_MS / 1000)
            if response.error_code == ErrorCode.MEMBER_ID_REQUIRED:
                self.member_id = response.member_id
                continue
            if response.error_code == ErrorCode.UNKNOWN_MEMBER_ID:
                self.member_id = ""
                continue
            check(response.error_code, context=f"join {self.group_id}")
            break
        else:
            raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID, context=f"join {self.group_id}")
        self.member_id, self.generation = response.member_id, response.generation_id
        self.leader = response.leader == self.member_id
        shares = self._deal(sorted(m.member_id for m in response.members), wanted) if self.leader else {}
        S = protocol.SyncGroupRequest
        synced = coordinator.request(S(
            group_id=self.group_id, generation_id=self.generation, member_id=self.member_id, group_instance_id=self.instance_id,
            protocol_type=PROTOCOL_TYPE, protocol_name=ASSIGNOR,
            assignments=[S.SyncGroupRequestAssignment(member_id=m, assignment=json.dumps(sorted(share)).encode()) for m, share in shares.items()],
        ), SESSION_TIMEOUT_MS / 1000)
        if synced.error_code in REJOIN:
            self.assigned = None
            return
        check(synced.error_code, context=f"sync {self.group_id}")
        self.assigned = frozenset((str(t), int(p)) for t, p in json.loads(bytes(synced.assignment) or b"[]"))
        self._heartbeat_at = time.monotonic()
        log.info("%s: generation %d, %d partitions here%s", self.group_id, self.generation, len(self.assigned), " (leader)" if self.leader else "")

    def _deal(self, members: list[str], wanted: set[Partition]) -> dict[str, list[Partition]]:
        shares: dict[str, list[Partition]] = {m: [] for m in members}
        for i, partition in enumerate(sorted(wanted)):
            shares[members[i % len(members)]].append(partition)
        self._dealt = frozenset(wanted)
        return shares
