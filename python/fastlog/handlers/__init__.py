"""Request handlers, one module per Kafka API.

Each module opens with a note on the API's behaviour and registers its handler with
`@handles(api_key, min_version, max_version)`; ApiVersions answers from this registry, so a
version is advertised exactly when a handler accepts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional

from fastlog import protocol
from fastlog.security.acls import CLUSTER_NAME, OPERATIONS_OF, ResourceType, host_of, operations_bits

if TYPE_CHECKING:
    from fastlog.broker import Broker


@dataclass
class RequestContext:
    broker: "Broker"
    header: Any
    api_version: int
    peer: str
    listener: str = ""  # the listener's name the request came in on
    principal: str = "ANONYMOUS"  # who sent it (Kafka's User: principal name)
    waited: float = 0.0  # seconds the handler parked for data (a long-polling Fetch): not work, for request quotas

    @property
    def host(self) -> str:
        """The client's IP address (what ACLs' hosts are matched against)."""
        return host_of(self.peer)

    def allows(self, operation: int, resource_type: int, name: str = CLUSTER_NAME, log_denied: bool = True) -> bool:
        """Whether the ACLs let this request's principal do `operation` on the resource (always,
        without an authorizer). A denial is logged and counted unless `log_denied` is False
        (a listing that leaves out what the client may not see)."""
        authorizer = self.broker.authorizer
        if authorizer is None or authorizer.authorize(self.principal, self.host, operation, resource_type, name):
            return True
        if log_denied:
            api = protocol.API_BY_KEY[self.header.request_api_key].name
            authorizer.log_denied(self.principal, self.peer, operation, resource_type, name, api)
        return False

    def authorized_operations(self, resource_type: int, name: str = CLUSTER_NAME) -> int:
        """The authorized-operations bit field of a resource (every operation of its type
        without an authorizer, as Kafka answers)."""
        authorizer = self.broker.authorizer
        if authorizer is None:
            return operations_bits(OPERATIONS_OF[ResourceType(resource_type)])
        return authorizer.authorized_operations(self.principal, self.host, resource_type, name)


HandlerFn = Callable[[RequestContext, Any], Awaitable[Optional[Any]]]


@dataclass(frozen=True)
class Handler:
    api_key: int
    min_version: int
    max_version: int
    handle: HandlerFn


HANDLERS: dict[int, Handler] = {}

# An API may also answer whole request frames without the Python codec (Produce does, in the
# Rust core): such a function returns the response frame, None for no response, or DECLINED to
# send the frame through its decoded handler (which answers what the fast path cannot decode).
# It is given (broker, frame, peer, principal).
FrameHandlerFn = Callable[["Broker", "bytes | bytearray", str, str], Awaitable[object]]
FRAME_HANDLERS: dict[int, FrameHandlerFn] = {}
DECLINED = object()


class Pending:
    """A response that is ready later: acks=all waiting for the in-sync replicas. The
    connection reads on (the next requests are handled, appends stay in order) and sends this
    response in its place among the others once `wait()` returns its frame."""

    def __init__(self, wait: Callable[[], Awaitable[Optional[bytes]]]) -> None:
        self.wait = wait


def handles(api_key: int, min_version: int, max_version: int) -> Callable[[HandlerFn], HandlerFn]:
    lo, hi = protocol.API_BY_KEY[api_key].valid_versions
    assert lo <= min_version <= max_version <= hi, f"API {api_key}: {min_version}-{max_version} not in {lo}-{hi}"

    def register(fn: HandlerFn) -> HandlerFn:
        HANDLERS[api_key] = Handler(api_key, min_version, max_version, fn)
        return fn

    return register


def answers_frames(api_key: int) -> Callable[[FrameHandlerFn], FrameHandlerFn]:
    def register(fn: FrameHandlerFn) -> FrameHandlerFn:
        FRAME_HANDLERS[api_key] = fn
        return fn

    return register


def api_versions_body(error_code: int = 0) -> Any:
    response = protocol.ApiVersionsResponse
    keys = [
        response.ApiVersion(api_key=h.api_key, min_version=h.min_version, max_version=h.max_version)
        for h in sorted(HANDLERS.values(), key=lambda h: h.api_key)
    ]
    return response(error_code=error_code, api_keys=keys)


# Registration happens on import; keep this list in API key order.
from fastlog.handlers import (  # noqa: E402,F401
    produce,
    fetch,
    list_offsets,
    metadata,
    api_versions,
    create_topics,
    delete_topics,
    delete_records,
    init_producer_id,
    offset_for_leader_epoch,
    describe_configs,
    alter_configs,
    describe_log_dirs,
    create_partitions,
    elect_leaders,
    incremental_alter_configs,
    alter_partition_reassignments,
    client_quotas,
    describe_quorum,
    describe_cluster,
)

# The group coordinator's APIs (see fastlog.group_coordinator).
from fastlog.handlers import (  # noqa: E402,F401
    offset_commit,
    offset_fetch,
    find_coordinator,
    join_group,
    heartbeat,
    leave_group,
    sync_group,
    describe_groups,
    list_groups,
    delete_groups,
    offset_delete,
)

# Security: SASL outside an exchange (see fastlog.security.sasl), SCRAM users, ACLs.
from fastlog.handlers import (  # noqa: E402,F401
    sasl,
    user_scram_credentials,
    acls,
)

# Transactions (see fastlog.transaction_coordinator).
from fastlog.handlers import (  # noqa: E402,F401
    add_partitions_to_txn,
    add_offsets_to_txn,
    end_txn,
    write_txn_markers,
    txn_offset_commit,
    describe_producers,
    describe_transactions,
    list_transactions,
)
