"""One Kafka client, with a security configuration, against a broker: produce records to a new
topic and consume them back in a group. Runs in the interpreter of the client version under
test (tests/security/test_client_security.py), so it imports only that client.

`python secure_client.py CLIENT JSON` where JSON holds bootstrap, protocol, mechanism (or
null), username, password, ca (PEM path), cert/key (PEM paths or null), topic, records. With
mechanism OAUTHBEARER, token (a JWT the test signed: the old clients' interpreters have no
PyJWT) and token_expiry (epoch seconds) take the place of username and password. An optional
bootstrap_timeout_ms goes to kafka-python 3.x.
Prints one JSON line: {"ok": true, "values": [...]} or {"ok": false, "error": "..."}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback

TIMEOUT = 20.0


def confluent(o: dict) -> list[str]:
    from confluent_kafka import Consumer, KafkaException, Producer

    conf = {"bootstrap.servers": o["bootstrap"], "security.protocol": o["protocol"]}
    if o["protocol"] in ("SSL", "SASL_SSL"):
        conf["ssl.ca.location"] = o["ca"]
        if o.get("cert"):
            conf.update({"ssl.certificate.location": o["cert"], "ssl.key.location": o["key"]})
    if o.get("mechanism") == "OAUTHBEARER":
        conf.update({"sasl.mechanism": "OAUTHBEARER", "oauth_cb": lambda _config: (o["token"], o["token_expiry"])})
    elif o.get("mechanism"):
        conf.update({"sasl.mechanism": o["mechanism"], "sasl.username": o["username"], "sasl.password": o["password"]})
    errors: list = []

    def on_error(error) -> None:
        errors.append(error)

    producer = Producer({**conf, "error_cb": on_error})
    for i in range(o["records"]):
        producer.produce(o["topic"], f"value-{i}".encode())
    deadline = time.monotonic() + TIMEOUT
    while producer.flush(0.5) and time.monotonic() < deadline:
        if any(e.code() == -169 for e in errors):  # _AUTHENTICATION
            raise KafkaException(errors[-1])
    if len(producer):
        raise RuntimeError(f"records not delivered: {errors[-1:] or 'no error'}")
    consumer = Consumer({**conf, "group.id": o["topic"], "auto.offset.reset": "earliest", "error_cb": on_error})
    consumer.subscribe([o["topic"]])
    values = []
    try:
        while len(values) < o["records"] and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                values.append(message.value().decode())
    finally:
        consumer.close()
    return values


def kafka_python(o: dict) -> list[str]:
    from kafka import KafkaConsumer, KafkaProducer

    conf = common_kafka_python(o)
    producer = KafkaProducer(**conf)
    for i in range(o["records"]):
        producer.send(o["topic"], f"value-{i}".encode())
    producer.flush(TIMEOUT)
    producer.close()
    consumer = KafkaConsumer(o["topic"], group_id=o["topic"], auto_offset_reset="earliest", consumer_timeout_ms=int(TIMEOUT * 1000), **conf)
    values = []
    for message in consumer:
        values.append(message.value.decode())
        if len(values) == o["records"]:
            break
    consumer.close()
    return values


def common_kafka_python(o: dict) -> dict:
    conf = {"bootstrap_servers": o["bootstrap"], "security_protocol": o["protocol"]}
    if o.get("bootstrap_timeout_ms") and int(kafka_version().split(".")[0]) >= 3:  # a 3.x config
        conf["bootstrap_timeout_ms"] = o["bootstrap_timeout_ms"]
    if o["protocol"] in ("SSL", "SASL_SSL"):
        conf["ssl_cafile"] = o["ca"]
        if o.get("cert"):
            conf.update({"ssl_certfile": o["cert"], "ssl_keyfile": o["key"]})
    if o.get("mechanism") == "OAUTHBEARER":
        conf.update({"sasl_mechanism": "OAUTHBEARER", "sasl_oauth_token_provider": kafka_python_token_provider(o["token"])})
    elif o.get("mechanism"):
        conf.update({"sasl_mechanism": o["mechanism"], "sasl_plain_username": o["username"], "sasl_plain_password": o["password"]})
    return conf


def kafka_version() -> str:
    import kafka

    return kafka.__version__


def kafka_python_token_provider(token: str):
    """A provider of `token` on kafka-python's AbstractTokenProvider, which has moved:
    kafka.oauth.abstract (2.0), kafka.sasl.oauth (2.1, 2.2), kafka.net.sasl.oauth (3.x)."""
    import importlib

    for name in ("kafka.net.sasl.oauth", "kafka.sasl.oauth", "kafka.oauth.abstract"):
        try:
            base = importlib.import_module(name).AbstractTokenProvider
            break
        except ImportError:
            continue
    else:
        raise RuntimeError("this kafka-python has no AbstractTokenProvider")

    class Provider(base):
        def token(self):
            return token

    return Provider()


def aiokafka(o: dict) -> list[str]:
    return asyncio.run(_aiokafka(o))


async def _aiokafka(o: dict) -> list[str]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context

    conf: dict = {"bootstrap_servers": o["bootstrap"], "security_protocol": o["protocol"]}
    if o["protocol"] in ("SSL", "SASL_SSL"):
        conf["ssl_context"] = create_ssl_context(cafile=o["ca"], certfile=o.get("cert"), keyfile=o.get("key"))
    if o.get("mechanism") == "OAUTHBEARER":
        from aiokafka.abc import AbstractTokenProvider

        class Provider(AbstractTokenProvider):
            async def token(self):
                return o["token"]

        conf.update({"sasl_mechanism": "OAUTHBEARER", "sasl_oauth_token_provider": Provider()})
    elif o.get("mechanism"):
        conf.update({"sasl_mechanism": o["mechanism"], "sasl_plain_username": o["username"], "sasl_plain_password": o["password"]})
    producer = AIOKafkaProducer(**conf)
    await asyncio.wait_for(producer.start(), TIMEOUT)
    try:
        for i in range(o["records"]):
            await asyncio.wait_for(producer.send_and_wait(o["topic"], f"value-{i}".encode()), TIMEOUT)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(o["topic"], group_id=o["topic"], auto_offset_reset="earliest", **conf)
    await asyncio.wait_for(consumer.start(), TIMEOUT)
    values: list[str] = []
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(values) < o["records"] and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            values += [m.value.decode() for messages in batches.values() for m in messages]
    finally:
        await consumer.stop()
    return values


CLIENTS = {"confluent-kafka": confluent, "kafka-python": kafka_python, "aiokafka": aiokafka}

if __name__ == "__main__":
    options = json.loads(sys.argv[2])
    try:
        print(json.dumps({"ok": True, "values": CLIENTS[sys.argv[1]](options)}))
    except Exception as e:  # reported to the test, which says what it expected
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}))
