"""Several network loops (`num.network.threads`, issue 15): the broker accepts and hands
connections in turn to loops in threads of their own; a produce on one loop wakes a fetch parked on another; requests are
answered in order per connection; a group whose members sit on different loops works; every
loop stops gracefully; `num.network.threads=1` serves on one loop as before."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest
import trio
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from fastlog import protocol
from fastlog.broker import Broker, run_until_signalled
from fastlog.config import BrokerConfig
from fastlog.records import Record, encode_batch
from tests.broker.wire import WireClient
from tests.conftest import BROKER_PYTHON, BrokerProcess, free_port

LOOPS = 4
TIMEOUT = 20


def start(tmp_path: Path, loops: int) -> BrokerProcess:
    process = BrokerProcess(tmp_path / "data")
    process.metrics_port = free_port()  # type: ignore[attr-defined]
    process.overrides.update({"num.network.threads": str(loops), "metrics.port": str(process.metrics_port)})  # type: ignore[attr-defined]
    return process.start()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    process = start(tmp_path, LOOPS)
    yield process
    if process.process and process.process.poll() is None:
        process.stop()


def connections_by_loop(broker: BrokerProcess) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{broker.metrics_port}/metrics", timeout=10).read().decode()  # type: ignore[attr-defined]
    out = {}
    for line in text.splitlines():
        if line.startswith("fastlog_network_loop_connections{"):
            label, value = line.split("} ")
            out[label.split('"')[1]] = float(value)
    return out


def open_clients(broker: BrokerProcess, count: int) -> list[WireClient]:
    clients = [WireClient(broker.bootstrap) for _ in range(count)]
    for client in clients:  # answered: the connection is being served
        client.request(protocol.ApiVersionsRequest(), 0)
    return clients


def create(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=TIMEOUT)


def produce_request(topic: str, values: list[bytes]) -> object:
    P = protocol.ProduceRequest
    now = int(time.time() * 1000)
    batch = encode_batch([Record(i, now, None, v) for i, v in enumerate(values)])
    return P(acks=1, timeout_ms=5000, topic_data=[P.TopicProduceData(name=topic, partition_data=[P.PartitionProduceData(index=0, records=batch)])])


def long_poll(topic: str, offset: int, wait_ms: int) -> object:
    F = protocol.FetchRequest
    return F(replica_id=-1, max_wait_ms=wait_ms, min_bytes=1, max_bytes=1 << 20,
             topics=[F.FetchTopic(topic=topic, partitions=[F.FetchPartition(partition=0, fetch_offset=offset, partition_max_bytes=1 << 20)])])


def test_connections_spread_over_the_loops(broker) -> None:
    clients = open_clients(broker, 32)
    try:
        assert connections_by_loop(broker) == {str(i): 32 / LOOPS for i in range(LOOPS)}, "handed out in turn"
    finally:
        for client in clients:
            client.close()


def test_a_produce_wakes_fetches_parked_on_every_loop(broker) -> None:
    create(broker.bootstrap, "wake")
    fetchers = open_clients(broker, 12)  # three on each loop (handed out in turn)
    answers: dict[int, tuple[float, object]] = {}

    def parked(index: int, client: WireClient) -> None:
        started = time.monotonic()
        answer = client.request(long_poll("wake", 0, 15_000), 11)
        answers[index] = (time.monotonic() - started, answer)

    threads = [threading.Thread(target=parked, args=(i, c)) for i, c in enumerate(fetchers)]
    for thread in threads:
        thread.start()
    time.sleep(1)  # every fetch is parked
    with WireClient(broker.bootstrap) as producer:
        assert producer.request(produce_request("wake", [b"hello"]), 9).responses[0].partition_responses[0].error_code == 0
    for thread in threads:
        thread.join(TIMEOUT)
    assert len(answers) == 12
    for waited, answer in answers.values():
        assert waited < 5, "woken by the produce, not by max_wait_ms (15 s)"
        assert answer.responses[0].partitions[0].high_watermark == 1
    for client in fetchers:
        client.close()


def test_requests_on_one_connection_are_answered_in_order(broker) -> None:
    """Pipelined requests of every kind (some answered on the connection's loop, some on the
    broker's own) come back in the order sent."""
    create(broker.bootstrap, "ordered")
    with WireClient(broker.bootstrap) as client:
        bodies = []
        for i in range(60):
            kind = i % 3
            if kind == 0:
                bodies.append((produce_request("ordered", [b"%d" % i]), 9))
            elif kind == 1:
                bodies.append((protocol.MetadataRequest(topics=None), 9))
            else:
                bodies.append((long_poll("ordered", 0, 0), 11))
        sent = []
        for body, version in bodies:
            client.send_frame(client.encode(body, version))
            sent.append(client.correlation_id)
        got, answered = [], []
        for body, version in bodies:
            got.append(client.read_response(type(body).API_KEY, version))
            answered.append(client.last_correlation_id)
    assert answered == sent, "answered in the order sent"
    offsets = [g.responses[0].partition_responses[0].base_offset for g, (b, _) in zip(got, bodies) if isinstance(b, protocol.ProduceRequest)]
    assert offsets == sorted(offsets) == list(range(20)), "appends in the order sent"


def test_a_group_whose_members_sit_on_different_loops(broker) -> None:
    create(broker.bootstrap, "grouped", partitions=4)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(400):
        producer.produce("grouped", value=b"%d" % i, partition=i % 4)
    assert producer.flush(TIMEOUT) == 0
    consumers = [
        Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "loops", "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
        for _ in range(4)
    ]
    for consumer in consumers:
        consumer.subscribe(["grouped"])
    seen: set[bytes] = set()
    deadline = time.monotonic() + 60
    while len(seen) < 400 and time.monotonic() < deadline:
        for consumer in consumers:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                seen.add(message.value())
    assigned = [len(c.assignment()) for c in consumers]
    for consumer in consumers:
        consumer.close()
    assert len(seen) == 400
    assert sorted(assigned) == [1, 1, 1, 1], "every member got a partition"


def test_every_loop_stops_gracefully_and_what_was_acknowledged_is_there(tmp_path: Path) -> None:
    broker = start(tmp_path, LOOPS)
    create(broker.bootstrap, "kept")
    clients = open_clients(broker, 16)
    for i, client in enumerate(clients):
        assert client.request(produce_request("kept", [b"%d" % i]), 9).responses[0].partition_responses[0].error_code == 0
    started = time.monotonic()
    assert broker.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 8, "a waiting connection held the stop for the grace (10 s)"
    for client in clients:
        client.close()
    broker.start()
    try:
        with WireClient(broker.bootstrap) as client:
            answer = client.request(long_poll("kept", 0, 0), 11)
        assert answer.responses[0].partitions[0].high_watermark == 16
    finally:
        broker.stop()


def test_a_shutdown_asked_in_the_process_ends_run_until_signalled(tmp_path: Path) -> None:
    """`request_shutdown()` (a bench or an embedding program, no signal) stops every loop and
    returns; it used to leave `run_until_signalled` waiting for a signal after the broker stopped."""
    port = free_port()
    broker = Broker(BrokerConfig.load(None, [f"listeners=PLAINTEXT://127.0.0.1:{port}", f"log.dirs={tmp_path}",
                                             f"num.network.threads={LOOPS}", "metrics.port=-1", "schema.registry.listeners=-1"]))

    async def serve_then_stop() -> None:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(run_until_signalled, broker)
                with WireClient(f"127.0.0.1:{port}") as client:
                    await trio.to_thread.run_sync(client.request, protocol.request_class(18)(), 3)  # ApiVersions
                broker.request_shutdown()

    trio.run(serve_then_stop)
    assert not broker.network_loops or all(not loop.thread.is_alive() for loop in broker.network_loops)


def test_one_network_thread_serves_on_the_brokers_own_loop(tmp_path: Path) -> None:
    broker = start(tmp_path, 1)
    try:
        clients = open_clients(broker, 8)
        assert connections_by_loop(broker) == {"0": 8}
        for client in clients:
            client.close()
    finally:
        broker.stop()


def test_a_connection_that_never_pauses_does_not_keep_others_on_its_loop_waiting(tmp_path: Path) -> None:
    """A connection reads and sends with the syscall first, without a pass of the loop between
    requests; it still lets the loop's other connections in (every HOLD_SECONDS). One client
    pipelines 100,000 ApiVersions requests; another, on the same loop, is answered before the
    flood is."""
    broker = start(tmp_path, 1)
    flood = 100_000
    try:
        with WireClient(broker.bootstrap, timeout=60) as flooder:
            frame = flooder.encode(protocol.ApiVersionsRequest(), 0)
            requests = (struct.pack(">i", len(frame)) + frame) * flood
            answered = [0]
            first_answers = threading.Event()

            def read_answers() -> None:
                pending = b""
                while answered[0] < flood:
                    chunk = flooder.sock.recv(1 << 20)
                    if not chunk:
                        return
                    pending += chunk
                    at = 0
                    while len(pending) - at >= 4 and len(pending) - at - 4 >= struct.unpack_from(">i", pending, at)[0]:
                        at += 4 + struct.unpack_from(">i", pending, at)[0]
                        answered[0] += 1
                    pending = pending[at:]
                    if answered[0] >= 1000:
                        first_answers.set()

            reader = threading.Thread(target=read_answers)
            sender = threading.Thread(target=flooder.sock.sendall, args=(requests,))
            reader.start()
            sender.start()
            assert first_answers.wait(TIMEOUT), "the flood is being answered"
            with WireClient(broker.bootstrap) as other:
                assert other.request(protocol.ApiVersionsRequest(), 0).error_code == 0
                answered_by_then = answered[0]
            sender.join(60)
            reader.join(60)
        assert answered[0] == flood, "every flooded request answered"
        assert answered_by_then < flood, "the other connection was answered while the flood was still being served"
    finally:
        broker.stop()


# What a broker may load after start-up, when a feature is first used: TLS keystores and
# certificates, the schema registry's schema types, its HTTP server, the console; fastlog's own
# modules too, so a new import at the top of one of them is covered.
LOADED_WHEN_USED = ("cryptography.x509", "cryptography.hazmat.primitives.serialization.pkcs12", "jsonschema", "avro.schema",
                    "google.protobuf.descriptor_pb2", "proto_schema_parser.parser", "hypercorn.trio", "starlette.applications",
                    "fastlog.console.app", "fastlog.console.decode", "fastlog.schema_registry.registry",
                    "fastlog.schema_registry.schema_types", "fastlog.http_serving", "fastlog.security.tls")


def test_the_broker_says_when_its_loops_run_without_the_gil(broker) -> None:
    """On a free-threaded CPython (FASTLOG_TEST_BROKER_PYTHON, as scripts/test runs these tests a
    second time) the loops' Python runs in parallel only if nothing loaded turned the GIL back on:
    the broker's start-up line says which, and it matches what its interpreter reports with
    fastlog's modules loaded. On 3.14t nothing a broker loads, then or later, turns it on; on
    3.13t cramjam 2.11.0 does unless PYTHON_GIL=0 (scripts/free-threaded.sh)."""
    probe = ("import sys, sysconfig, fastlog.broker, fastlog.cli; "
             "print(getattr(sys, '_is_gil_enabled', lambda: True)(), bool(sysconfig.get_config_var('Py_GIL_DISABLED')), sys.version_info[1])")
    answer = subprocess.run([BROKER_PYTHON, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    gil, free_threaded_build, minor = answer[0] == "True", answer[1] == "True", int(answer[2])
    assert (f"({LOOPS} network loops, GIL off)" in broker.log_text()) == (not gil)
    if free_threaded_build and minor >= 14:
        everything = f"import sys, fastlog.broker, fastlog.cli, {', '.join(LOADED_WHEN_USED)}; print(sys._is_gil_enabled())"
        unforced = {name: value for name, value in os.environ.items() if name != "PYTHON_GIL"}
        loaded = subprocess.run([BROKER_PYTHON, "-c", everything], capture_output=True, text=True, env=unforced)
        assert loaded.returncode == 0 and loaded.stdout.split() == ["False"], f"a module turned the GIL on, or failed to load: {loaded.stderr}"
        if os.environ.get("PYTHON_GIL") != "1":
            assert not gil, "a free-threaded build runs the broker with the GIL"
    elif free_threaded_build and os.environ.get("PYTHON_GIL") == "0":
        assert not gil, "a free-threaded build told to run without the GIL runs with it"


def test_a_fetch_does_not_park_when_an_append_came_between_its_read_and_its_wait() -> None:
    """The race of two loops: a fetch reads nothing, a produce on another loop appends and
    wakes nobody, then the fetch parks. The partition's wake count tells the fetch not to."""
    import trio

    from fastlog.handlers.fetch import wait_for_data
    from fastlog.log_manager import Partition

    async def main() -> float:
        partition = Partition("t", 0, None)  # type: ignore[arg-type]
        seen = partition.wakes  # when the fetch read the partition
        partition.wake_waiters()  # the append, before the fetch parks
        started = trio.current_time()
        await wait_for_data([(partition, seen)], trio.current_time() + 30)
        return trio.current_time() - started

    assert trio.run(main) < 1, "returned at once, not after the 30 s deadline"


def test_a_request_handed_to_the_brokers_loop_runs_there_and_holds_its_slot_until_it_ends() -> None:
    """`on_owner` between two real Trio loops in two threads: the handler runs on the broker's
    loop, its answer and its exceptions come back, and a waiter that gives up leaves its slot
    held until the handler ends (a client hanging up cannot pile up handlers there)."""
    import trio

    from fastlog.network_loops import NetworkLoop

    class Refused(Exception):
        pass

    async def main() -> None:
        owner_thread = threading.get_ident()
        # on_owner uses no broker state; the loop's idle sweep reads one setting
        loop = NetworkLoop(SimpleNamespace(config={"connections.max.idle.ms": -1}), 1)  # type: ignore[arg-type]
        await loop.start()
        release = trio.Event()

        async def handler(value: int) -> tuple[int, int]:
            await trio.sleep(0)
            return value * 2, threading.get_ident()

        async def refusing() -> None:
            raise Refused("no")

        async def slow() -> str:
            await release.wait()
            return "late"

        def on_loop(fn, *args):  # from a worker thread: runs fn on the network loop
            return trio.from_thread.run(fn, *args, trio_token=loop._token)

        async def abandon_slow() -> bool:
            with trio.move_on_after(0.2) as scope:
                await loop.on_owner(slow)
            return scope.cancelled_caught

        try:
            answer, ran_on = await trio.to_thread.run_sync(on_loop, loop.on_owner, handler, 21)
            assert (answer, ran_on) == (42, owner_thread)
            with pytest.raises(Refused):
                await trio.to_thread.run_sync(on_loop, loop.on_owner, refusing)
            assert await trio.to_thread.run_sync(on_loop, abandon_slow), "the waiter gave up"
            assert loop._forwarded.borrowed_tokens == 1, "the abandoned handler still holds its slot"
            release.set()
            with trio.fail_after(10):
                while loop._forwarded.borrowed_tokens:
                    await trio.sleep(0.01)
        finally:
            loop.stop()
            await loop.join()

    trio.run(main)
