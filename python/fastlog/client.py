"""A small synchronous Kafka client over fastlog's own codec, for the command-line tools.

It speaks only the Kafka protocol, so the tools work against any Kafka-compatible broker and
need nothing beyond fastlog itself. It is deliberately simple: blocking sockets with a timeout
on every operation, one connection per broker id, requests answered one at a time.

- Versions: on connecting, ApiVersions (v3, falling back to v0 per KIP-511) tells what the
  broker accepts; each request uses the highest version both sides support (`CLIENT_VERSIONS`
  is what this module can build and read).
- Routing: Metadata gives partition leaders; produce, fetch and list-offsets go to leaders,
  group requests to the group's coordinator (FindCoordinator), admin requests to any broker
  (the controller when the broker names one).
- Errors: a Kafka error code becomes `KafkaError` carrying the code's name
  (`KafkaError.name == "UNKNOWN_TOPIC_OR_PARTITION"`); an unreachable broker
  `BrokerUnreachable`; a broker that does not answer in time `ClientTimeout`.
"""

from __future__ import annotations

import collections
import itertools
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

from fastlog import protocol
from fastlog.protocol import ErrorCode
from fastlog.records import Compression, Record, decode_batches, encode_batch
from fastlog.security.client_side import ClientSecurity, SaslFailed, sasl_exchange

__all__ = [
    "BrokerUnreachable",
    "Client",
    "ClientError",
    "ClientTimeout",
    "CommittedOffset",
    "FetchedPartition",
    "KafkaError",
    "UnsupportedByBroker",
    "murmur2_partition",
    "parse_bootstrap",
]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
EARLIEST, LATEST = -2, -1  # ListOffsets timestamps
RESOURCE_TOPIC, RESOURCE_BROKER = 2, 4
OP_SET, OP_DELETE = 0, 1  # IncrementalAlterConfigs operations
_SIZE = struct.Struct(">i")

# api_key -> (lowest, highest) version this module builds and reads.
CLIENT_VERSIONS: dict[int, tuple[int, int]] = {
    0: (3, 11),  # Produce: magic-2 batches from v3
    1: (4, 17),  # Fetch: topic ids from v13
    2: (1, 10),  # ListOffsets
    3: (4, 12),  # Metadata: v4 is the first that can ask not to auto-create topics
    8: (2, 9),  # OffsetCommit
    9: (2, 9),  # OffsetFetch: groups[] from v8
    10: (1, 6),  # FindCoordinator: coordinator_keys[] from v4
    11: (5, 9),  # JoinGroup (fastlog mirror's workers): group_instance_id from v5
    12: (3, 4),  # Heartbeat
    13: (3, 5),  # LeaveGroup: members[] from v3
    14: (3, 5),  # SyncGroup
    15: (0, 5),  # DescribeGroups
    16: (0, 5),  # ListGroups
    18: (0, 4),  # ApiVersions
    19: (1, 7),  # CreateTopics
    20: (1, 6),  # DeleteTopics: topics[] from v6
    32: (1, 4),  # DescribeConfigs
    35: (1, 4),  # DescribeLogDirs
    37: (0, 3),  # CreatePartitions
    42: (0, 2),  # DeleteGroups
    44: (0, 1),  # IncrementalAlterConfigs
    29: (0, 3),  # DescribeAcls
    30: (0, 3),  # CreateAcls
    31: (0, 3),  # DeleteAcls
    17: (1, 1),  # SaslHandshake (before SaslAuthenticate)
    36: (0, 2),  # SaslAuthenticate
    48: (0, 1),  # DescribeClientQuotas
    49: (0, 1),  # AlterClientQuotas
    50: (0, 0),  # DescribeUserScramCredentials
    22: (0, 4),  # InitProducerId (transactions: fastlog mirror's exactly-once)
    24: (0, 3),  # AddPartitionsToTxn (v4+ is for brokers)
    25: (0, 3),  # AddOffsetsToTxn
    26: (0, 3),  # EndTxn
    28: (0, 3),  # TxnOffsetCommit
    51: (0, 0),  # AlterUserScramCredentials
    55: (0, 2),  # DescribeQuorum
}


class ClientError(Exception):
    """Anything that makes a tool's request fail."""


class BrokerUnreachable(ClientError):
    """No connection could be made (or kept) to a broker."""


class ClientTimeout(ClientError):
    """A broker did not answer within the timeout."""


class UnsupportedByBroker(ClientError):
    """The broker does not support any version of an API that this client speaks."""


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"ERROR_{code}"


class KafkaError(ClientError):
    """A broker answered with a Kafka error code; `name` is Kafka's name for it."""

    def __init__(self, code: int, message: Optional[str] = None, context: str = "") -> None:
        self.code = int(code)
        self.name = error_name(code)
        self.message = message
        self.context = context
        text = self.name
        if context:
            text = f"{context}: {text}"
        if message:
            text = f"{text} ({message})"
        super().__init__(text)


def check(code: int, message: Optional[str] = None, context: str = "") -> None:
    if code:
        raise KafkaError(code, message, context)


def parse_bootstrap(text: str) -> list[tuple[str, int]]:
    """`host:port[,host:port...]` -> [(host, port)]; ValueError if malformed."""
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bootstrap server {item!r} is not HOST:PORT")
        out.append((host.strip("[]") or "127.0.0.1", int(port)))
    if not out:
        raise ValueError("no bootstrap server given")
    return out


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (Utils.murmur2), so keyed records land where Java clients put them."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = length - rest
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def murmur2_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# -- results ---------------------------------------------------------------------------------


@dataclass
class PartitionInfo:
    topic: str
    index: int
    leader: int
    replicas: list[int]
    isr: list[int]
    error_code: int = 0


@dataclass
class TopicInfo:
    name: str
    id: Any
    internal: bool
    partitions: dict[int, PartitionInfo]
    error_code: int = 0


@dataclass
class ClusterInfo:
    cluster_id: Optional[str]
    controller_id: int
    brokers: dict[int, tuple[str, int]]
    topics: dict[str, TopicInfo]


@dataclass
class FetchedPartition:
    topic: str
    partition: int
    error_code: int
    high_watermark: int
    log_start_offset: int
    records: list[Record] = field(default_factory=list)
    next_offset: int = -1
    raw: bytes = b""  # the record batches as they came (fetch(decode=False))
    aborted: list[tuple[int, int]] = field(default_factory=list)  # read_committed: (producer id, first offset)


class AbortedFilter:
    """What a read_committed reader drops, as Kafka's consumers do: a Fetch names each aborted
    transaction (producer id, first offset); from that offset on, the producer's transactional
    batches are dropped until its ABORT marker."""

    def __init__(self, aborted: Iterable[tuple[int, int]]) -> None:
        self.pending = collections.deque(sorted(aborted, key=lambda a: a[1]))
        self.active: set[int] = set()

    def keeps_header(self, last_offset: int, producer_id: int, transactional: bool, abort_marker: bool) -> bool:
        """For a batch in offset order: False when it is an aborted transaction's (markers are
        passed through: the caller skips them anyway)."""
        while self.pending and self.pending[0][1] <= last_offset:
            self.active.add(self.pending.popleft()[0])
        if abort_marker:
            self.active.discard(producer_id)
            return True
        return not (transactional and producer_id in self.active)

    def keeps(self, batch: Any) -> bool:
        """`keeps_header` of a decoded RecordBatch."""
        abort = batch.is_control and batch.control_type == 0
        return self.keeps_header(batch.next_offset - 1, batch.producer_id, batch.is_transactional, abort)


@dataclass
class CommittedOffset:
    topic: str
    partition: int
    offset: int  # -1: nothing committed
    metadata: Optional[str] = None
    error_code: int = 0


# -- one broker connection -------------------------------------------------------------------


class BrokerConnection:
    """A blocking connection to one broker, with the API versions it supports."""

    def __init__(self, host: str, port: int, timeout: float, client_id: str, security: Optional[ClientSecurity] = None) -> None:
        self.host, self.port = host, port
        self.timeout = timeout
        self.client_id = client_id
        self.versions: dict[int, tuple[int, int]] = {}
        self._correlation = itertools.count(1)
        security = security or ClientSecurity()
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except socket.timeout:
            raise BrokerUnreachable(f"cannot connect to {host}:{port}: timed out after {timeout:g}s") from None
        except OSError as e:
            raise BrokerUnreachable(f"cannot connect to {host}:{port}: {e.strerror or e}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if security.tls is not None:
                self._start_tls(security.tls)
            self._negotiate()
            if security.uses_sasl:
                assert security.mechanism is not None
                self._authenticate(security.mechanism, security.username, security.password)
        except BaseException:
            self.close()
            raise

    def _start_tls(self, context: ssl.SSLContext) -> None:
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname=self.host)
        except (ssl.SSLError, ssl.CertificateError) as e:
            raise BrokerUnreachable(f"TLS with {self.address} failed: {e}") from None
        except socket.timeout:
            raise ClientTimeout(f"TLS with {self.address}: no handshake within {self.timeout:g}s") from None

    def _authenticate(self, mechanism: str, username: str, password: str) -> None:
        """SaslHandshake v1, then the mechanism's tokens in SaslAuthenticate requests."""
        handshake = self.request(protocol.SaslHandshakeRequest(mechanism=mechanism))
        check(handshake.error_code, f"the broker offers {', '.join(handshake.mechanisms)}", context=f"SASL with {self.address}")
        exchange = sasl_exchange(mechanism, username, password)
        try:
            token = next(exchange)
            while True:
                answer = self.request(protocol.SaslAuthenticateRequest(auth_bytes=token))
                check(answer.error_code, answer.error_message, context=f"SASL {mechanism} login of {username} at {self.address}")
                token = exchange.send(bytes(answer.auth_bytes))
        except StopIteration:
            return
        except SaslFailed as e:
            raise ClientError(f"SASL {mechanism} with {self.address}: {e}") from None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _negotiate(self) -> None:
        request = protocol.ApiVersionsRequest(client_software_name="fastlog-tools", client_software_version="1")
        response = self.call(request, 3)
        if response.error_code == ErrorCode.UNSUPPORTED_VERSION:
            response = self.call(protocol.ApiVersionsRequest(), 0)
        check(response.error_code, context=f"ApiVersions from {self.address}")
        self.versions = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}

    def version(self, api_key: int) -> int:
        """The highest version of `api_key` both this client and the broker support."""
        lo, hi = CLIENT_VERSIONS[api_key]
        name = protocol.API_BY_KEY[api_key].name
        if api_key not in self.versions:
            raise UnsupportedByBroker(f"broker {self.address} does not support {name}")
        broker_lo, broker_hi = self.versions[api_key]
        if min(hi, broker_hi) < max(lo, broker_lo):
            raise UnsupportedByBroker(
                f"broker {self.address} supports {name} v{broker_lo}-v{broker_hi}; this client v{lo}-v{hi}"
            )
        return min(hi, broker_hi)

    def request(self, body: Any, extra_timeout: float = 0.0) -> Any:
        """Sends `body` at the negotiated version and returns the decoded response."""
        return self.call(body, self.version(body.API_KEY), extra_timeout)

    def call(self, body: Any, version: int, extra_timeout: float = 0.0) -> Any:
        api_key = body.API_KEY
        correlation_id = next(self._correlation)
        header = protocol.RequestHeader(
            request_api_key=api_key,
            request_api_version=version,
            correlation_id=correlation_id,
            client_id=self.client_id,
        )
        payload = protocol.encode_request(header, body).getvalue()
        name = protocol.API_BY_KEY[api_key].name
        deadline = time.monotonic() + self.timeout + extra_timeout
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(_SIZE.pack(len(payload)) + payload)
            (size,) = _SIZE.unpack(self._recv_exact(4, deadline, name))
            frame = self._recv_exact(size, deadline, name)
        except socket.timeout:
            self.close()
            raise ClientTimeout(f"{name} to {self.address}: no response within {self.timeout + extra_timeout:g}s") from None
        except OSError as e:
            self.close()
            raise BrokerUnreachable(f"{name} to {self.address}: {e.strerror or e}") from None
        reader = protocol.Reader(frame)
        response_header = protocol.ResponseHeader.decode(reader, protocol.response_header_version(api_key, version))
        if response_header.correlation_id != correlation_id:
            self.close()
            raise ClientError(f"{name} to {self.address}: response for correlation id {response_header.correlation_id}, expected {correlation_id}")
        return protocol.response_class(api_key).decode(reader, version)

    def _recv_exact(self, size: int, deadline: float, name: str) -> bytes:
        data = bytearray()
        while len(data) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout()
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(min(size - len(data), 1 << 20))
            if not chunk:
                raise BrokerUnreachable(f"{name} to {self.address}: the broker closed the connection")
            data += chunk
        return bytes(data)


# -- the client ------------------------------------------------------------------------------


class Client:
    """A client for a cluster, found through `bootstrap` ("host:port[,host:port]")."""

    def __init__(self, bootstrap: str = DEFAULT_BOOTSTRAP, *, timeout: float = 10.0, client_id: str = "fastlog-tools",
                 security: Optional[ClientSecurity] = None) -> None:
        self.bootstrap = parse_bootstrap(bootstrap)
        self.security = security  # TLS and SASL settings (None: PLAINTEXT)
        self.timeout = timeout
        self.client_id = client_id
        self.brokers: dict[int, tuple[str, int]] = {}
        self._connections: dict[int, BrokerConnection] = {}
        self._bootstrap_connection: Optional[BrokerConnection] = None
        self._cluster: Optional[ClusterInfo] = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()
        if self._bootstrap_connection is not None:
            self._bootstrap_connection.close()
            self._bootstrap_connection = None

    # connections

    def any_connection(self) -> BrokerConnection:
        for connection in self._connections.values():
            if connection.sock.fileno() >= 0:
                return connection
        if self._bootstrap_connection is not None and self._bootstrap_connection.sock.fileno() >= 0:
            return self._bootstrap_connection
        errors = []
        for host, port in self.bootstrap:
            try:
                self._bootstrap_connection = BrokerConnection(host, port, self.timeout, self.client_id, self.security)
                return self._bootstrap_connection
            except BrokerUnreachable as e:
                errors.append(str(e))
        raise BrokerUnreachable("; ".join(errors))

    def connection(self, node_id: int) -> BrokerConnection:
        connection = self._connections.get(node_id)
        if connection is not None and connection.sock.fileno() >= 0:
            return connection
        if node_id not in self.brokers:
            self.metadata()
        if node_id not in self.brokers:
            raise BrokerUnreachable(f"broker {node_id} is not in the cluster metadata")
        host, port = self.brokers[node_id]
        connection = self._connections[node_id] = BrokerConnection(host, port, self.timeout, self.client_id, self.security)
        return connection

    def controller(self) -> BrokerConnection:
        cluster = self._cluster or self.metadata()
        if cluster.controller_id in cluster.brokers:
            return self.connection(cluster.controller_id)
        return self.any_connection()

    # Metadata

    def metadata(self, topics: Optional[Sequence[str]] = None, *, auto_create: bool = False) -> ClusterInfo:
        """Brokers, controller and topics (all topics when `topics` is None)."""
        M = protocol.MetadataRequest
        wanted = None if topics is None else [M.MetadataRequestTopic(name=t) for t in topics]
        response = self.any_connection().request(M(topics=wanted, allow_auto_topic_creation=auto_create))
        brokers = {b.node_id: (b.host, b.port) for b in response.brokers}
        self.brokers.update(brokers)
        out = {}
        for t in response.topics:
            partitions = {
                p.partition_index: PartitionInfo(t.name, p.partition_index, p.leader_id, list(p.replica_nodes), list(p.isr_nodes), p.error_code)
                for p in t.partitions
            }
            out[t.name] = TopicInfo(t.name, t.topic_id, t.is_internal, dict(sorted(partitions.items())), t.error_code)
        cluster = ClusterInfo(response.cluster_id, response.controller_id, brokers, out)
        if topics is None or self._cluster is None:
            self._cluster = cluster
        else:
            self._cluster.topics.update(out)
            self._cluster.brokers.update(brokers)
        return cluster

    def topic(self, name: str) -> TopicInfo:
        """One topic's metadata; KafkaError UNKNOWN_TOPIC_OR_PARTITION when it does not exist."""
        info = self.metadata([name]).topics.get(name)
        if info is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, context=f"topic {name!r}")
        check(info.error_code, context=f"topic {name!r}")
        return info

    def _by_leader(self, partitions: Iterable[tuple[str, int]]) -> dict[int, list[tuple[str, int]]]:
        groups: dict[int, list[tuple[str, int]]] = {}
        cluster = self._cluster
        for topic, index in partitions:
            info = cluster.topics.get(topic) if cluster else None
            if info is None or index not in info.partitions:
                info = self.topic(topic)
            if index not in info.partitions:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, context=f"partition {topic}-{index}")
            leader = info.partitions[index].leader
            if leader < 0:
                raise KafkaError(ErrorCode.LEADER_NOT_AVAILABLE, context=f"partition {topic}-{index}")
            groups.setdefault(leader, []).append((topic, index))
        return groups

    # Produce

    def produce(
        self,
        batches: Mapping[tuple[str, int], Sequence[Record]],
        *,
        compression: Compression = Compression.NONE,
        acks: int = -1,
        timeout_ms: int = 30_000,
    ) -> dict[tuple[str, int], int]:
        """Appends one batch per partition; returns each partition's base offset (-1 with acks=0).

        Raises KafkaError for the first partition the broker refused."""
        encoded = {key: encode_batch(records, compression=compression) for key, records in batches.items()}
        return self.produce_encoded(encoded, acks=acks, timeout_ms=timeout_ms)

    def produce_encoded(self, batches: Mapping[tuple[str, int], bytes], *, acks: int = -1, timeout_ms: int = 30_000,
                        errors: Optional[dict[tuple[str, int], "KafkaError"]] = None,
                        transactional_id: Optional[str] = None) -> dict[tuple[str, int], int]:
        """`produce` of record batches already encoded (one per partition). With `errors`, a
        partition the broker refused is put there (its KafkaError) instead of raising, so the
        caller learns which partitions were appended. `transactional_id`: the batches belong
        to that producer's transaction."""
        P = protocol.ProduceRequest
        out: dict[tuple[str, int], int] = {}
        for leader, partitions in self._by_leader(batches).items():
            topics: dict[str, list] = {}
            for topic, index in partitions:
                topics.setdefault(topic, []).append(P.PartitionProduceData(index=index, records=batches[(topic, index)]))
            request = P(
                transactional_id=transactional_id,
                acks=acks,
                timeout_ms=timeout_ms,
                topic_data=[P.TopicProduceData(name=t, partition_data=parts) for t, parts in topics.items()],
            )
            connection = self.connection(leader)
            if acks == 0:
                self._send_only(connection, request)
                out.update({p: -1 for p in partitions})
                continue
            response = connection.request(request, timeout_ms / 1000)
            for t in response.responses:
                for p in t.partition_responses:
                    if p.error_code and errors is not None:
                        errors[(t.name, p.index)] = KafkaError(p.error_code, p.error_message, f"produce to {t.name}-{p.index}")
                        continue
                    check(p.error_code, p.error_message, f"produce to {t.name}-{p.index}")
                    out[(t.name, p.index)] = p.base_offset
        return out

    def _send_only(self, connection: BrokerConnection, body: Any) -> None:
        header = protocol.RequestHeader(
            request_api_key=body.API_KEY,
            request_api_version=connection.version(body.API_KEY),
            correlation_id=next(connection._correlation),
            client_id=self.client_id,
        )
        payload = protocol.encode_request(header, body).getvalue()
        try:
            connection.sock.settimeout(self.timeout)
            connection.sock.sendall(_SIZE.pack(len(payload)) + payload)
        except OSError as e:
            raise BrokerUnreachable(f"Produce to {connection.address}: {e}") from None

    # Fetch

    def fetch(
        self,
        offsets: Mapping[tuple[str, int], int],
        *,
        max_wait_ms: int = 500,
        min_bytes: int = 1,
        max_bytes: int = 52_428_800,
        partition_max_bytes: int = 1_048_576,
        isolation_level: int = 0,
        decode: bool = True,
    ) -> dict[tuple[str, int], FetchedPartition]:
        """Records from each partition's offset on (sessionless fetches to the leaders); with
        `decode` False, each partition's record bytes as they came (`raw`), not decoded."""
        F = protocol.FetchRequest
        out: dict[tuple[str, int], FetchedPartition] = {}
        for leader, partitions in self._by_leader(offsets).items():
            connection = self.connection(leader)
            version = connection.version(F.API_KEY)
            topics: dict[str, list] = {}
            for topic, index in partitions:
                topics.setdefault(topic, []).append(
                    F.FetchPartition(partition=index, fetch_offset=offsets[(topic, index)], partition_max_bytes=partition_max_bytes)
                )
            by_id = {}
            fetch_topics = []
            for topic, parts in topics.items():
                if version >= 13:
                    topic_id = self._cluster.topics[topic].id
                    by_id[topic_id] = topic
                    fetch_topics.append(F.FetchTopic(topic_id=topic_id, partitions=parts))
                else:
                    fetch_topics.append(F.FetchTopic(topic=topic, partitions=parts))
            request = F(
                replica_id=-1,
                max_wait_ms=max_wait_ms,
                min_bytes=min_bytes,
                max_bytes=max_bytes,
                isolation_level=isolation_level,
                session_id=0,
                session_epoch=-1,
                topics=fetch_topics,
            )
            response = connection.call(request, version, max_wait_ms / 1000)
            check(getattr(response, "error_code", 0), context=f"fetch from {connection.address}")
            for t in response.responses:
                name = by_id.get(t.topic_id, t.topic) if version >= 13 else t.topic
                for p in t.partitions:
                    key = (name, p.partition_index)
                    start = offsets.get(key, 0)
                    result = FetchedPartition(name, p.partition_index, p.error_code, p.high_watermark, p.log_start_offset, [], start)
                    result.aborted = [(a.producer_id, a.first_offset) for a in p.aborted_transactions or []]
                    if not decode:
                        result.raw = bytes(p.records or b"")
                    elif p.records:
                        committed = AbortedFilter(result.aborted)
                        for batch in decode_batches(p.records):
                            result.next_offset = max(result.next_offset, batch.next_offset)
                            if not committed.keeps(batch) or batch.is_control:
                                continue
                            result.records.extend(r for r in batch.records if r.offset >= start)
                    out[key] = result
        return out

    # ListOffsets

    def list_offsets(self, partitions: Iterable[tuple[str, int]], timestamp: int = LATEST) -> dict[tuple[str, int], int]:
        """The offset for `timestamp` (EARLIEST, LATEST or milliseconds) of each partition;
        -1 when no record has that timestamp or a later one."""
        L = protocol.ListOffsetsRequest
        out: dict[tuple[str, int], int] = {}
        for leader, wanted in self._by_leader(list(partitions)).items():
            topics: dict[str, list] = {}
            for topic, index in wanted:
                topics.setdefault(topic, []).append(L.ListOffsetsPartition(partition_index=index, timestamp=timestamp))
            request = L(replica_id=-1, topics=[L.ListOffsetsTopic(name=t, partitions=p) for t, p in topics.items()])
            response = self.connection(leader).request(request)
            for t in response.topics:
                for p in t.partitions:
                    check(p.error_code, context=f"list offsets of {t.name}-{p.partition_index}")
                    out[(t.name, p.partition_index)] = p.offset
        return out

    def offsets_of(self, topic: str) -> dict[int, tuple[int, int]]:
        """{partition: (earliest, latest)} of a topic."""
        info = self.topic(topic)
        keys = [(topic, p) for p in info.partitions]
        earliest = self.list_offsets(keys, EARLIEST)
        latest = self.list_offsets(keys, LATEST)
        return {p: (earliest[(topic, p)], latest[(topic, p)]) for p in info.partitions}

    # topic administration

    def create_topic(
        self, name: str, partitions: int = -1, replication_factor: int = -1, configs: Optional[Mapping[str, str]] = None,
        *, timeout_ms: int = 30_000, validate_only: bool = False,
    ) -> None:
        C = protocol.CreateTopicsRequest
        topic = C.CreatableTopic(
            name=name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            configs=[C.CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()],
        )
        response = self.controller().request(C(topics=[topic], timeout_ms=timeout_ms, validate_only=validate_only), timeout_ms / 1000)
        for result in response.topics:
            check(result.error_code, result.error_message, f"create topic {result.name!r}")

    def delete_topics(self, names: Sequence[str], *, timeout_ms: int = 30_000) -> None:
        D = protocol.DeleteTopicsRequest
        connection = self.controller()
        if connection.version(D.API_KEY) >= 6:
            request = D(topics=[D.DeleteTopicState(name=n) for n in names], timeout_ms=timeout_ms)
        else:
            request = D(topic_names=list(names), timeout_ms=timeout_ms)
        response = connection.request(request, timeout_ms / 1000)
        for result in response.responses:
            check(result.error_code, getattr(result, "error_message", None), f"delete topic {result.name!r}")

    def create_partitions(self, name: str, total: int, *, timeout_ms: int = 30_000) -> None:
        C = protocol.CreatePartitionsRequest
        request = C(topics=[C.CreatePartitionsTopic(name=name, count=total, assignments=None)], timeout_ms=timeout_ms)
        response = self.controller().request(request, timeout_ms / 1000)
        for result in response.results:
            check(result.error_code, result.error_message, f"add partitions to {result.name!r}")

    def describe_configs(self, resource_type: int, name: str, keys: Optional[Sequence[str]] = None) -> list[Any]:
        """The config entries (name, value, config_source, read_only, is_sensitive, ...)."""
        D = protocol.DescribeConfigsRequest
        request = D(resources=[D.DescribeConfigsResource(resource_type=resource_type, resource_name=name, configuration_keys=keys)])
        response = self.controller().request(request)
        entries = []
        for result in response.results:
            check(result.error_code, result.error_message, f"describe configs of {result.resource_name!r}")
            entries += result.configs
        return entries

    def describe_topic_configs(self, names: Sequence[str], keys: Optional[Sequence[str]] = None) -> dict[str, dict[str, Optional[str]]]:
        """{topic: {config: value}} of many topics in one DescribeConfigs; a topic the broker
        refused (deleted meanwhile, not authorized) is left out."""
        if not names:
            return {}
        D = protocol.DescribeConfigsRequest
        resources = [D.DescribeConfigsResource(resource_type=RESOURCE_TOPIC, resource_name=n, configuration_keys=keys) for n in names]
        response = self.controller().request(D(resources=resources))
        return {r.resource_name: {e.name: e.value for e in r.configs} for r in response.results if not r.error_code}

    def alter_configs(self, resource_type: int, name: str, set_: Mapping[str, str], delete: Sequence[str] = (), *, validate_only: bool = False) -> None:
        """IncrementalAlterConfigs: sets `set_` and removes the overrides named in `delete`."""
        I = protocol.IncrementalAlterConfigsRequest
        configs = [I.AlterableConfig(name=k, config_operation=OP_SET, value=v) for k, v in set_.items()]
        configs += [I.AlterableConfig(name=k, config_operation=OP_DELETE, value=None) for k in delete]
        request = I(resources=[I.AlterConfigsResource(resource_type=resource_type, resource_name=name, configs=configs)], validate_only=validate_only)
        response = self.controller().request(request)
        for result in response.responses:
            check(result.error_code, result.error_message, f"alter configs of {result.resource_name!r}")

    # client quotas: an entity is [(type, name or None for the default)]

    def describe_client_quotas(self, components: Sequence[tuple[str, int, Optional[str]]] = (), *, strict: bool = False) -> list[tuple[list, dict]]:
        """[(entity, {key: value})] matching the filter: (entity type, match type 0 name / 1
        default / 2 any, name) components."""
        D = protocol.DescribeClientQuotasRequest
        request = D(components=[D.ComponentData(entity_type=t, match_type=m, match=n) for t, m, n in components], strict=strict)
        response = self.any_connection().request(request)
        check(response.error_code, response.error_message, "describe client quotas")
        return [([(e.entity_type, e.entity_name) for e in entry.entity], {v.key: v.value for v in entry.values}) for entry in response.entries or []]

    def alter_client_quotas(self, changes: Sequence[tuple[Sequence[tuple[str, Optional[str]]], Mapping[str, Optional[float]]]], *,
                            validate_only: bool = False) -> None:
        """Each (entity, {key: value, or None to remove it}); KafkaError for the first refused."""
        A = protocol.AlterClientQuotasRequest
        entries = [
            A.EntryData(
                entity=[A.EntityData(entity_type=t, entity_name=n) for t, n in entity],
                ops=[A.OpData(key=k, value=0.0 if v is None else float(v), remove=v is None) for k, v in ops.items()],
            )
            for entity, ops in changes
        ]
        response = self.controller().request(A(entries=entries, validate_only=validate_only))
        for entry in response.entries:
            named = ", ".join(f"{e.entity_type}={e.entity_name if e.entity_name is not None else '<default>'}" for e in entry.entity)
            check(entry.error_code, entry.error_message, f"alter client quotas of {named}")

    def log_dir_sizes(self, topics: Optional[Sequence[str]] = None) -> dict[tuple[str, int], int]:
        """{(topic, partition): bytes on disk} summed over every broker's log dirs."""
        D = protocol.DescribeLogDirsRequest
        wanted = None
        if topics is not None:
            wanted = [D.DescribableLogDirTopic(topic=t, partitions=list(self.topic(t).partitions)) for t in topics]
        cluster = self._cluster or self.metadata()
        sizes: dict[tuple[str, int], int] = {}
        for node_id in sorted(cluster.brokers):
            response = self.connection(node_id).request(D(topics=wanted))
            check(getattr(response, "error_code", 0), context="describe log dirs")
            for result in response.results:
                if result.error_code:
                    continue
                for t in result.topics:
                    for p in t.partitions:
                        if not p.is_future_key:
                            sizes[(t.name, p.partition_index)] = sizes.get((t.name, p.partition_index), 0) + p.partition_size
        return sizes

    # groups

    def coordinator(self, group_id: str, key_type: int = 0) -> BrokerConnection:
        """The coordinator of a group (key type 0) or of a transactional id (1)."""
        F = protocol.FindCoordinatorRequest
        connection = self.any_connection()
        what = "group" if key_type == 0 else "transactional id"
        if connection.version(F.API_KEY) >= 4:
            response = connection.request(F(key_type=key_type, coordinator_keys=[group_id]))
            c = response.coordinators[0]
            check(c.error_code, c.error_message, f"find coordinator of {what} {group_id!r}")
            node_id, host, port = c.node_id, c.host, c.port
        else:
            response = connection.request(F(key=group_id, key_type=key_type))
            check(response.error_code, response.error_message, f"find coordinator of {what} {group_id!r}")
            node_id, host, port = response.node_id, response.host, response.port
        self.brokers.setdefault(node_id, (host, port))
        return self.connection(node_id)

    def list_groups(self) -> list[Any]:
        """Every group of every broker: ListedGroup (group_id, protocol_type, group_state)."""
        cluster = self._cluster or self.metadata()
        groups = []
        for node_id in sorted(cluster.brokers):
            response = self.connection(node_id).request(protocol.ListGroupsRequest())
            check(response.error_code, context=f"list groups of broker {node_id}")
            groups += response.groups
        return groups

    def describe_group(self, group_id: str) -> Any:
        D = protocol.DescribeGroupsRequest
        response = self.coordinator(group_id).request(D(groups=[group_id]))
        group = response.groups[0]
        check(group.error_code, getattr(group, "error_message", None), f"describe group {group_id!r}")
        return group

    def committed_offsets(self, group_id: str, partitions: Optional[Sequence[tuple[str, int]]] = None) -> list[CommittedOffset]:
        """The group's committed offsets (all of them when `partitions` is None)."""
        O = protocol.OffsetFetchRequest
        connection = self.coordinator(group_id)
        by_topic: Optional[dict[str, list[int]]] = None
        if partitions is not None:
            by_topic = {}
            for topic, index in partitions:
                by_topic.setdefault(topic, []).append(index)
        context = f"fetch offsets of group {group_id!r}"
        if connection.version(O.API_KEY) >= 8:
            topics = None if by_topic is None else [O.OffsetFetchRequestTopics(name=t, partition_indexes=p) for t, p in by_topic.items()]
            response = connection.request(O(groups=[O.OffsetFetchRequestGroup(group_id=group_id, topics=topics)]))
            group = response.groups[0]
            check(group.error_code, context=context)
            result_topics = group.topics
        else:
            topics = None if by_topic is None else [O.OffsetFetchRequestTopic(name=t, partition_indexes=p) for t, p in by_topic.items()]
            response = connection.request(O(group_id=group_id, topics=topics))
            check(response.error_code, context=context)
            result_topics = response.topics
        out = []
        for t in result_topics:
            for p in t.partitions:
                out.append(CommittedOffset(t.name, p.partition_index, p.committed_offset, p.metadata, p.error_code))
        return sorted(out, key=lambda c: (c.topic, c.partition))

    def commit_offsets(self, group_id: str, offsets: Mapping[tuple[str, int], int], metadata: str = "") -> None:
        """Commits as a standalone consumer (no generation, no member id), as Kafka's tools do."""
        O = protocol.OffsetCommitRequest
        by_topic: dict[str, list] = {}
        for (topic, index), offset in sorted(offsets.items()):
            by_topic.setdefault(topic, []).append(
                O.OffsetCommitRequestPartition(partition_index=index, committed_offset=offset, committed_metadata=metadata)
            )
        request = O(
            group_id=group_id,
            generation_id_or_member_epoch=-1,
            member_id="",
            topics=[O.OffsetCommitRequestTopic(name=t, partitions=p) for t, p in by_topic.items()],
        )
        response = self.coordinator(group_id).request(request)
        for t in response.topics:
            for p in t.partitions:
                check(p.error_code, context=f"commit offset of group {group_id!r} for {t.name}-{p.partition_index}")

    def delete_groups(self, group_ids: Sequence[str]) -> dict[str, int]:
        """{group: error code}; deletion needs the group to have no members."""
        out = {}
        for group_id in group_ids:
            response = self.coordinator(group_id).request(protocol.DeleteGroupsRequest(groups_names=[group_id]))
            for result in response.results:
                out[result.group_id] = result.error_code
        return out


def iter_partitions(info: TopicInfo) -> Iterator[tuple[str, int]]:
    for index in info.partitions:
        yield info.name, index
