"""What security costs: produce and consume over SASL_SSL next to PLAINTEXT on one broker in one
run, and how many connections a second authenticate with SCRAM (TLS handshake included).

    python bench/bench_security.py [--records 200000] [--size 1000] [--connections 200]

One broker with PLAINTEXT and SASL_SSL listeners (a certificate made for the run, a
SCRAM-SHA-256 user with 4096 iterations); confluent-kafka produces `--records` records of
`--size` bytes (linger 5 ms, batches up to 1 MB) to a new topic per listener and reads them
back with a consumer; then `--connections` connections each do TLS, SaslHandshake and the
SCRAM exchange (client side computed here, as a client does), one after another.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import secrets
import socket
import ssl
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Consumer, Producer  # noqa: E402

from fastlog import protocol  # noqa: E402
from tests.conftest import BrokerProcess, free_port  # noqa: E402
from tests.security.certs import PASSWORD, CertificateAuthority  # noqa: E402
from tests.security.conftest import add_scram_users, SCRAM_USERS  # noqa: E402

MECHANISM = "SCRAM-SHA-256"


def client_conf(listener: str, broker: dict) -> dict:
    if listener == "PLAINTEXT":
        return {"bootstrap.servers": broker["PLAINTEXT"]}
    user, password = SCRAM_USERS[MECHANISM]
    return {"bootstrap.servers": broker["SASL_SSL"], "security.protocol": "SASL_SSL", "ssl.ca.location": broker["ca"],
            "sasl.mechanism": MECHANISM, "sasl.username": user, "sasl.password": password}


def produce(conf: dict, topic: str, records: int, size: int) -> float:
    producer = Producer({**conf, "linger.ms": 5, "batch.size": 1_000_000, "queue.buffering.max.messages": 1_000_000})
    value = os.urandom(size)
    started = time.perf_counter()
    for _ in range(records):
        while True:
            try:
                producer.produce(topic, value)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(120) == 0
    return time.perf_counter() - started


def consume(conf: dict, topic: str, records: int) -> float:
    consumer = Consumer({**conf, "group.id": f"bench-{topic}", "auto.offset.reset": "earliest", "fetch.max.bytes": 52_428_800})
    consumer.subscribe([topic])
    seen, started = 0, None
    deadline = time.monotonic() + 120
    while seen < records and time.monotonic() < deadline:
        for message in consumer.consume(10_000, 1.0):
            if message.error() is None:
                started = started or time.perf_counter()
                seen += 1
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    assert seen == records, f"consumed {seen} of {records}"
    return elapsed


def request(sock: ssl.SSLSocket, body: object, version: int) -> object:
    header = protocol.RequestHeader(request_api_key=body.API_KEY, request_api_version=version, correlation_id=1, client_id="bench")
    payload = protocol.encode_request(header, body).getvalue()
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    reader = protocol.Reader(recv_exact(sock, size))
    protocol.ResponseHeader.decode(reader, protocol.response_header_version(body.API_KEY, version))
    return protocol.response_class(body.API_KEY).decode(reader, version)


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def scram_login(port: int, context: ssl.SSLContext, user: str, password: str) -> None:
    """One connection: TLS, SaslHandshake v1, SCRAM-SHA-256 in two SaslAuthenticate rounds."""
    with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Kafka clients do
        assert request(sock, protocol.SaslHandshakeRequest(mechanism=MECHANISM), 1).error_code == 0
        nonce = secrets.token_urlsafe(18)
        first_bare = f"n={user},r={nonce}"
        server_first = request(sock, protocol.SaslAuthenticateRequest(auth_bytes=f"n,,{first_bare}".encode()), 2).auth_bytes.decode()
        fields = dict(item.split("=", 1) for item in server_first.split(","))
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
        without_proof = f"c=biws,r={fields['r']}"
        auth_message = f"{first_bare},{server_first},{without_proof}".encode()
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, "sha256").digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
        final = request(sock, protocol.SaslAuthenticateRequest(auth_bytes=f"{without_proof},p={proof}".encode()), 2)
        assert final.error_code == 0, final.error_message


def measure(records: int, size: int, connections: int) -> dict:
    """{"PLAINTEXT": (produce MB/s, consume MB/s), "SASL_SSL": (...), "scram_logins_per_s": n}
    from one broker with both listeners, one after the other."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ca = CertificateAuthority(root / "pki")
        server = ca.issue("broker", server=True)
        ports = {"PLAINTEXT": free_port(), "SASL_SSL": free_port()}
        process = BrokerProcess(root / "data", {
            "listeners": f"PLAINTEXT://127.0.0.1:{ports['PLAINTEXT']},SASL_SSL://127.0.0.1:{ports['SASL_SSL']}",
            "ssl.keystore.location": str(server.p12), "ssl.keystore.password": PASSWORD, "ssl.keystore.type": "PKCS12",
        })
        process.port = ports["PLAINTEXT"]
        process.start()
        try:
            add_scram_users(process.bootstrap)
            broker = {"PLAINTEXT": f"127.0.0.1:{ports['PLAINTEXT']}", "SASL_SSL": f"127.0.0.1:{ports['SASL_SSL']}", "ca": str(ca.pem)}
            megabytes = records * size / 1e6
            results: dict = {}
            for listener in ("PLAINTEXT", "SASL_SSL"):
                topic = f"bench-{listener.lower()}-{secrets.token_hex(4)}"
                produced = produce(client_conf(listener, broker), topic, records, size)
                consumed = consume(client_conf(listener, broker), topic, records)
                results[listener] = (megabytes / produced, megabytes / consumed)
            context = ssl.create_default_context(cafile=str(ca.pem))
            user, password = SCRAM_USERS[MECHANISM]
            started = time.perf_counter()
            for _ in range(connections):
                scram_login(ports["SASL_SSL"], context, user, password)
            results["scram_logins_per_s"] = connections / (time.perf_counter() - started)
            return results
        finally:
            process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=200)
    args = parser.parse_args()
    results = measure(args.records, args.size, args.connections)
    for listener in ("PLAINTEXT", "SASL_SSL"):
        produced, consumed = results[listener]
        print(f"{listener:10s} produce {produced:8.1f} MB/s  consume {consumed:8.1f} MB/s")
    plain, secure = results["PLAINTEXT"], results["SASL_SSL"]
    print(f"SASL_SSL / PLAINTEXT: produce {secure[0] / plain[0]:.2f}, consume {secure[1] / plain[1]:.2f}")
    logins = results["scram_logins_per_s"]
    print(f"SCRAM-SHA-256 over TLS: {logins:.0f} connections/s ({1000 / logins:.1f} ms each, one at a time)")


if __name__ == "__main__":
    main()
