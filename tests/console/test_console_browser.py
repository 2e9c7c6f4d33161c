"""The web console in a real browser: Debian's headless chromium, driven by Selenium through
chromedriver, against a broker whose data comes from confluent-kafka (producers, consumers,
the admin client and the schema registry client).

Every page is checked for console errors (SEVERE entries in the browser's log); the only ones
allowed are the failed fetches a bad-input test provokes on purpose, matched by URL and status.
Each page leaves a screenshot in `artifacts_dir`.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional
from urllib.parse import quote

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        f"the browser tests need Debian's chromium at {CHROMIUM} and its driver at {CHROMEDRIVER} (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType  # noqa: E402
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient  # noqa: E402
from confluent_kafka.schema_registry.avro import AvroSerializer  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from tests.conftest import BrokerProcess  # noqa: E402
from tests.console.conftest import call, console_broker_process  # noqa: E402

WAIT = 15  # seconds, the longest any one wait may take
DESKTOP = (1280, 900)
PHONE = (390, 844)
DEFAULT_RETENTION_MS = "604800000"


def unique(label: str) -> str:
    return f"console-{label}-{os.getpid()}-{time.monotonic_ns() % 10**6}"


# -- the cluster, through confluent-kafka -----------------------------------------------------


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> str:
    client = admin(bootstrap)  # held until the answer is in: a dropped client cancels its requests
    client.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)], operation_timeout=10)[name].result(timeout=WAIT)
    return name


def produce(bootstrap: str, topic: str, records: list[dict]) -> list[tuple[int, int]]:
    """Each record a dict of produce() arguments; returns (partition, offset) of each, in order."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "enable.idempotence": False, "max.in.flight": 1})
    delivered: list[Any] = [None] * len(records)

    def report(index: int) -> Callable[[Any, Any], None]:
        def done(error: Any, message: Any) -> None:
            delivered[index] = error if error is not None else (message.partition(), message.offset())
        return done

    for index, record in enumerate(records):
        producer.produce(topic, on_delivery=report(index), **record)
    assert producer.flush(WAIT) == 0, "confluent-kafka could not deliver every record in time"
    for item in delivered:
        assert isinstance(item, tuple), f"delivery failed: {item}"
    return delivered


def commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commits offsets for `group` as a consumer of it, then leaves: an empty group with offsets."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    client = admin(bootstrap)
    result = client.list_consumer_group_offsets([request])[group].result(timeout=WAIT)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def topic_config(bootstrap: str, topic: str, name: str) -> str:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    client = admin(bootstrap)
    return client.describe_configs([resource])[resource].result(timeout=WAIT)[name].value


def end_offsets(console_url: str, topic: str) -> dict[int, int]:
    status, document, _ = call(f"{console_url}/api/topics/{quote(topic, safe='')}")
    assert status == 200, document
    return {p["partition"]: p["end_offset"] for p in document["partitions"]}


def shown_as(data: bytes) -> tuple[str, str]:
    """The badge and text the console shows for bytes with no schema (decode.py's rules)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "hex", data.hex(" ")
    if text.strip()[:1] in ("{", "["):
        return "json", json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    return "text", text


# -- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
        options.add_argument(argument)
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    yield driver
    driver.quit()


# SELECT queries of the DOM, run in the page (one round trip, no stale elements)
ROWS_JS = """
const table = document.querySelector(arguments[0]);
if (!table) return null;
return [...table.querySelectorAll("tbody tr")].map((tr) => [...tr.children].map((td) => td.textContent));
"""
MESSAGES_JS = """
const table = document.querySelector("#messages-table");
if (!table) return null;
const item = (node) => {
  const pre = node.querySelector("pre[data-base64]");
  if (!pre) return { null: (node.querySelector(":scope > span.muted") || node).textContent };
  return { base64: pre.dataset.base64, text: pre.textContent, badge: node.querySelector(".badge").textContent };
};
return [...table.querySelectorAll("tbody tr")].map((tr) => {
  const td = tr.children;
  return {
    offset: Number(td[0].textContent), timestamp: td[1].textContent, key: item(td[2]), value: item(td[3]),
    headers: [...td[4].firstElementChild.children].map((div) => ({ key: div.querySelector("b").textContent, ...item(div) })),
  };
});
"""


class Page:
    """One console in the shared browser: navigation, waits, the log check, screenshots."""

    def __init__(self, driver: WebDriver, url: str, artifacts: Path) -> None:
        self.driver, self.url, self.artifacts = driver, url, artifacts
        driver.get_log("browser")  # what an earlier, failed test left behind is not this test's

    def open(self, route: str, title: str) -> None:
        """A fresh load of the page at `route` (a URL hash such as #/topics), ready when its h1 says `title`."""
        self.driver.get("about:blank")
        self.driver.get(f"{self.url}/{route}")
        self.wait_title(title)

    def wait_title(self, title: str) -> None:
        self.wait(lambda: self.text("#main h1") == title, f"a page titled {title!r}")
        assert self.js("return document.getElementById('error').hidden"), f"error banner: {self.text('#error')}"

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(lambda _: condition())
        except TimeoutException:
            self.shot("timeout-" + re.sub(r"\W+", "-", what)[:60])
            raise AssertionError(f"waited {timeout}s for {what}; page says: {self.text('#main')!r}") from None

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def text(self, css: str) -> Optional[str]:
        return self.js("const e = document.querySelector(arguments[0]); return e ? e.textContent : null", css)

    def exists(self, css: str) -> bool:
        return bool(self.js("return document.querySelector(arguments[0]) !== null", css))

    def el(self, css: str) -> Any:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def click(self, css: str) -> None:
        self.wait(lambda: self.el(css).is_enabled(), f"{css} to be there")
        for attempt in range(3):  # a page that refreshes itself may swap the element under us
            try:
                self.el(css).click()
                return
            except StaleElementReferenceException:
                if attempt == 2:
                    raise

    def type(self, css: str, text: str) -> None:
        """Replaces a field's text as a user does, keystrokes and all (so `input` events fire)."""
        field = self.el(css)
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(Keys.DELETE)
        if text:
            field.send_keys(text)
        assert field.get_attribute("value") == text

    def select(self, css: str, value: str) -> None:
        Select(self.el(css)).select_by_value(value)

    def rows(self, css: str) -> Optional[list[list[str]]]:
        return self.js(ROWS_JS, css)

    def message(self, css: str) -> tuple[str, str]:
        """(text, class) of a form's message line, once it has text."""
        self.wait(lambda: self.text(css), f"a message in {css}")
        return self.text(css) or "", self.js("return document.querySelector(arguments[0]).className", css)

    def shot(self, name: str) -> None:
        """A screenshot of the whole page, below the fold too."""
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1}
        data = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})["data"]
        (self.artifacts / f"{name}.png").write_bytes(base64.b64decode(data))

    def failed_fetch(self, path: str, status: int) -> re.Pattern:
        """The log line chromium writes for a fetch of `path` (a URL prefix) answered with `status`."""
        return re.compile(rf"^{re.escape(self.url + path)}\S* - Failed to load resource: the server responded with a status of {status} ")

    def check_log(self, *expected: re.Pattern) -> None:
        """No SEVERE entry in the browser's log but the `expected` ones, each of which must be there."""
        severe = [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]
        unexpected = [m for m in severe if not any(p.search(m) for p in expected)]
        missing = [p.pattern for p in expected if not any(p.search(m) for m in severe)]
        assert not unexpected, f"console errors: {unexpected}"
        assert not missing, f"expected console errors not seen: {missing} (saw {severe})"


@pytest.fixture
def page(browser: WebDriver, console_broker: BrokerProcess, artifacts_dir: Path) -> Page:
    return Page(browser, console_broker.console_url, artifacts_dir)  # type: ignore[attr-defined]


# -- data the tests share ---------------------------------------------------------------------


USER_V1 = {"type": "record", "name": "User", "namespace": "console.test", "fields": [{"name": "name", "type": "string"}]}
USER_V2 = {**USER_V1, "fields": [*USER_V1["fields"], {"name": "email", "type": "string", "default": ""}]}


class Seeded:
    topic: str  # 3 partitions, 10 messages each
    group: str  # no members, offsets 4, 5, 6 committed
    subject: str  # two Avro versions: USER_V1, USER_V2
    schema_ids: list[int]


@pytest.fixture(scope="module")
def seeded(console_broker: BrokerProcess) -> Seeded:
    # The console samples for its charts only once somebody asks it something.
    call(console_broker.console_url + "/api/overview")  # type: ignore[attr-defined]
    out = Seeded()
    out.topic = create_topic(console_broker.bootstrap, unique("seed"), 3)
    produce(console_broker.bootstrap, out.topic, [{"partition": p, "key": f"k{i}".encode(), "value": f"message {i} of partition {p}".encode()} for p in range(3) for i in range(10)])
    out.group = unique("seed-group")
    commit(console_broker.bootstrap, out.group, out.topic, {0: 4, 1: 5, 2: 6})
    out.subject = unique("seed-user") + "-value"
    with SchemaRegistryClient({"url": console_broker.registry_url}) as registry:  # type: ignore[attr-defined]
        out.schema_ids = [registry.register_schema(out.subject, Schema(json.dumps(s), "AVRO")) for s in (USER_V1, USER_V2)]
    return out


BASE_TIME = int(time.time() * 1000) - 600_000  # the records below: one second apart, ten minutes ago
EXACT_RECORDS: list[dict] = [
    {"key": bytes(range(256)), "value": bytes(range(255, -1, -1)), "headers": [("bin", bytes(range(256))), ("text", "ünïcödé ✓".encode())]},
    {"key": "clé ✓".encode(), "value": "héllo wörld — 日本語 ✓".encode(), "headers": []},
    {"key": b"json-key", "value": json.dumps({"needle": "Haystack", "n": [1, 2.5, None, True], "ü": {}}).encode(), "headers": [("content-type", b"application/json")]},
    {"key": None, "value": b"a value without a key", "headers": [("empty", b""), ("none", None)]},
    {"key": b"tombstone", "value": None, "headers": []},
    {"key": b"\xff\xfe not utf-8", "value": b"", "headers": [("b", b"\x00\x01\x02\xff")]},
]
for _index, _record in enumerate(EXACT_RECORDS):
    _record["timestamp"] = BASE_TIME + 1000 * _index


@pytest.fixture(scope="module")
def exact_topic(console_broker: BrokerProcess) -> str:
    topic = create_topic(console_broker.bootstrap, unique("exact"), 1)
    assert produce(console_broker.bootstrap, topic, EXACT_RECORDS) == [(0, i) for i in range(len(EXACT_RECORDS))]
    return topic


def assert_shown(item: dict, data: Optional[bytes], where: str) -> None:
    """A rendered key, value or header holds exactly `data` (base64) and shows it as decode.py says."""
    if data is None:
        assert item == {"null": "null"}, f"{where}: {item}"
        return
    assert "base64" in item, f"{where}: expected bytes, got {item}"
    assert base64.b64decode(item["base64"]) == data, f"{where}: the bytes differ"
    assert (item["badge"], item["text"]) == shown_as(data), where


def load_messages(page: Page, count: int) -> list[dict]:
    page.click("#browse-load")
    page.wait(lambda: page.js("return document.querySelectorAll('#messages-table tbody tr').length") == count
              and "form-ok" in page.js("return document.getElementById('browse-message').className"), f"{count} messages loaded")
    return page.js(MESSAGES_JS)


def iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# -- 1. every page ----------------------------------------------------------------------------


def wait_for_samples(url: str, path: str, points: Callable[[Any], list], count: int = 2) -> None:
    """Until the console's history holds `count` points for a chart (bounded): its samples come
    every half second, but the page asks again only every 5 s."""
    deadline = time.monotonic() + WAIT
    while len(points(call(url + path)[1])) < count:
        assert time.monotonic() < deadline, f"the console never sampled {path} {count} times"
        time.sleep(0.2)


def test_every_page_loads_without_console_errors(page: Page, seeded: Seeded, console_broker: BrokerProcess) -> None:
    wait_for_samples(page.url, "/api/overview", lambda d: d["history"])
    page.open("#/", "Overview")
    nav = page.js("return [...document.querySelectorAll('nav a:not([hidden])')].map((a) => a.textContent)")
    assert nav == ["Overview", "Topics", "Consumer groups", "Schemas", "Metrics"]
    assert page.text("#brokers .value") == "1"
    assert int(page.text("#topic-count .value") or "0") >= 1
    assert page.text("#under-replicated .value") == "0"
    # every chart draws a line, two samples being in
    page.wait(lambda: page.js("const c = document.querySelectorAll('#overview-charts .chart'); return c.length >= 3 && [...c].every((x) => x.querySelector('polyline'))"),
              "every overview chart to draw a line")
    lasts = page.js("return [...document.querySelectorAll('#overview-charts polyline')].map((l) => l.dataset.last)")
    assert all(float(v) >= 0 for v in lasts), lasts
    assert float(lasts[-1]) > 0, "size on disk"
    page.shot("overview")
    page.check_log()

    page.open("#/topics", "Topics")
    names = [row[0] for row in page.rows("#topics-table")]
    assert seeded.topic in names
    page.type("#topic-filter", seeded.topic)
    page.wait(lambda: [r[0] for r in page.rows("#topics-table")] == [seeded.topic], "the filter to leave one topic")
    assert page.rows("#topics-table")[0][1:3] == ["3", "30"]
    page.type("#topic-filter", "")
    page.wait(lambda: len(page.rows("#topics-table")) == len(names), "every topic back")
    page.click("#topics-table th.sortable:nth-child(3)")  # Messages, ascending
    counts = [int(r[2]) for r in page.rows("#topics-table")]
    assert counts == sorted(counts)
    page.click("#topics-table th.sortable:nth-child(3)")  # again: descending
    counts = [int(r[2]) for r in page.rows("#topics-table")]
    assert counts == sorted(counts, reverse=True)
    page.shot("topics")
    page.check_log()

    name = quote(seeded.topic, safe="")
    page.open(f"#/topics/{name}", f"Topic {seeded.topic}")
    rows = page.rows("#partitions-table")
    assert [r[:3] for r in rows] == [[str(p), "0", "10"] for p in range(3)]
    assert all(r[4] == r[5] == r[6] != "-1" for r in rows), rows  # one broker: leader, replica and ISR
    page.shot("topic-partitions")
    page.check_log()

    page.click("#tab-configs")
    page.wait(lambda: page.exists("#configs-table input[data-config='retention.ms']"), "the configs tab")
    assert page.js("return document.querySelector(\"input[data-config='retention.ms']\").value") == DEFAULT_RETENTION_MS
    page.shot("configs")
    page.check_log()

    page.click("#tab-messages")
    page.wait(lambda: page.exists("#browse-load"), "the messages tab")
    page.select("#browse-partition", "2")
    shown = load_messages(page, 10)
    assert [m["value"]["text"] for m in shown] == [f"message {i} of partition 2" for i in range(10)]
    page.shot("messages")
    page.check_log()

    page.click("#tab-produce")
    page.wait(lambda: page.exists("#produce-send"), "the produce tab")
    page.shot("produce")
    page.check_log()

    page.open("#/groups", "Consumer groups")
    row = [r for r in page.rows("#groups-table") if r[0] == seeded.group]
    assert row and row[0][1] == "Empty", row
    page.shot("groups")
    page.check_log()
    page.driver.find_element(By.LINK_TEXT, seeded.group).click()
    page.wait_title(f"Group {seeded.group}")
    assert page.text("#group-state") == "Empty"
    assert page.text("#total-lag") == str(6 + 5 + 4)
    assert [r[:5] for r in page.rows("#lag-table")] == [[seeded.topic, str(p), str(4 + p), "10", str(6 - p)] for p in range(3)]
    page.shot("group")
    page.check_log()

    page.open("#/schemas", "Schemas")
    assert seeded.subject in [r[0] for r in page.rows("#subjects-table")]
    page.shot("schemas")
    page.check_log()
    page.driver.find_element(By.LINK_TEXT, seeded.subject).click()
    page.wait_title(f"Subject {seeded.subject}")
    assert [r[:3] for r in page.rows("#versions-table")] == [["1", str(seeded.schema_ids[0]), "AVRO"], ["2", str(seeded.schema_ids[1]), "AVRO"]]
    page.wait(lambda: page.exists("#diff div"), "the diff")
    page.shot("subject")
    page.check_log()


@pytest.fixture
def phone(page: Page) -> Iterator[Page]:
    """The page as a phone shows it: a 390x844 mobile viewport."""
    page.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 1, "mobile": True})
    yield page
    page.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_phone_width_keeps_nav_and_tables(phone: Page, seeded: Seeded) -> None:
    page = phone

    def fits() -> None:
        visible = page.js("""return [...document.querySelectorAll('nav a:not([hidden])')].map((a) => {
            const r = a.getBoundingClientRect(); return r.width > 0 && r.left >= 0 && r.right <= window.innerWidth; })""")
        assert visible and all(visible), f"nav links off screen: {visible}"
        # wide tables scroll inside their own box; the page itself does not scroll sideways
        assert page.js("return document.documentElement.scrollWidth <= window.innerWidth + 1"), \
            page.js("return [document.documentElement.scrollWidth, window.innerWidth]")

    page.open("#/topics", "Topics")
    assert page.js("return [window.innerWidth, window.innerHeight]") == list(PHONE)
    assert page.el("#topics-table").is_displayed()
    fits()
    page.shot("topics-phone")
    page.check_log()

    page.open(f"#/groups/{quote(seeded.group, safe='')}", f"Group {seeded.group}")
    assert page.el("#lag-table").is_displayed()
    fits()
    page.shot("group-phone")
    page.check_log()

    page.open(f"#/topics/{quote(seeded.topic, safe='')}/messages", f"Topic {seeded.topic}")
    load_messages(page, 10)
    assert page.el("#messages-table").is_displayed()
    fits()
    page.driver.save_screenshot(str(page.artifacts / "messages-phone.png"))  # what the phone's screen shows
    page.check_log()


# -- 2. the message browser -------------------------------------------------------------------


def test_message_browser_shows_confluent_kafka_records_byte_exact(page: Page, exact_topic: str) -> None:
    page.open(f"#/topics/{quote(exact_topic, safe='')}/messages", f"Topic {exact_topic}")
    shown = load_messages(page, len(EXACT_RECORDS))
    assert page.text("#browse-message") == f"{len(EXACT_RECORDS)} messages, offsets 0–5 of 0–5"
    for offset, (message, record) in enumerate(zip(shown, EXACT_RECORDS)):
        assert message["offset"] == offset
        assert message["timestamp"] == iso(record["timestamp"]).replace("T", " ").replace("Z", "")
        assert_shown(message["key"], record["key"], f"key of offset {offset}")
        assert_shown(message["value"], record["value"], f"value of offset {offset}")
        assert [h["key"] for h in message["headers"]] == [k for k, _ in record["headers"]]
        for header, (name, data) in zip(message["headers"], record["headers"]):
            assert_shown({k: v for k, v in header.items() if k != "key"}, data, f"header {name} of offset {offset}")
    # the badges say what each was taken for
    assert [m["value"].get("badge") for m in shown] == ["hex", "text", "json", "text", None, "text"]
    page.shot("messages-exact")
    page.check_log()


def test_message_browser_offset_timestamp_and_search(page: Page, exact_topic: str) -> None:
    page.open(f"#/topics/{quote(exact_topic, safe='')}/messages", f"Topic {exact_topic}")
    page.select("#browse-mode", "offset")
    page.type("#browse-from", "2")
    page.type("#browse-limit", "2")
    assert [m["offset"] for m in load_messages(page, 2)] == [2, 3]
    assert page.text("#browse-message") == "2 messages, offsets 2–3 of 0–5"

    # from a time in milliseconds: the first record at or after it
    page.select("#browse-mode", "timestamp")
    page.type("#browse-limit", "50")
    page.type("#browse-from", str(BASE_TIME + 2500))
    assert [m["offset"] for m in load_messages(page, 3)] == [3, 4, 5]
    # ... or as an ISO time
    page.type("#browse-from", iso(BASE_TIME + 4000))
    assert [m["offset"] for m in load_messages(page, 2)] == [4, 5]
    # a time after every record: nothing
    page.type("#browse-from", str(BASE_TIME + 60_000))
    page.click("#browse-load")
    page.wait(lambda: page.text("#browse-message") == "0 messages, offsets 6–5 of 0–5", "an empty page")
    page.check_log()

    # the search box filters what was loaded: keys, values, header names and values, any case
    page.select("#browse-mode", "newest")
    load_messages(page, len(EXACT_RECORDS))

    def found(text: str) -> list[int]:
        page.type("#browse-search", text)
        return [int(r[0]) for r in page.rows("#messages-table")]

    assert found("WÖRLD") == [1]
    assert found("haystack") == [2]
    assert found("content-type") == [2]
    assert found("without a key") == [3]
    assert found("ünïcödé") == [0]
    assert found("no such text anywhere") == []
    assert found("") == list(range(len(EXACT_RECORDS)))
    page.shot("messages-search")
    page.check_log()


# -- 3. Avro ----------------------------------------------------------------------------------


READING = {
    "type": "record", "name": "Reading", "namespace": "console.test",
    "fields": [{"name": "sensor", "type": "string"}, {"name": "celsius", "type": "double"}, {"name": "ok", "type": "boolean"}, {"name": "tags", "type": {"type": "array", "items": "string"}}],
}


def test_avro_values_are_decoded_through_the_registry(page: Page, console_broker: BrokerProcess) -> None:
    topic = create_topic(console_broker.bootstrap, unique("avro"), 1)
    values = [{"sensor": "kitchen", "celsius": 21.5, "ok": True, "tags": ["a", "b"]}, {"sensor": "attic ✓", "celsius": -3.25, "ok": False, "tags": []}]
    with SchemaRegistryClient({"url": console_broker.registry_url}) as registry:  # type: ignore[attr-defined]
        schema_id = registry.register_schema(f"{topic}-value", Schema(json.dumps(READING), "AVRO"))
        serializer = AvroSerializer(registry, json.dumps(READING), conf={"auto.register.schemas": False})
        payloads = [serializer(v, SerializationContext(topic, MessageField.VALUE)) for v in values]
    assert all(p[0] == 0 and int.from_bytes(p[1:5], "big") == schema_id for p in payloads)
    produce(console_broker.bootstrap, topic, [{"key": f"r{i}".encode(), "value": p} for i, p in enumerate(payloads)])

    page.open(f"#/topics/{quote(topic, safe='')}/messages", f"Topic {topic}")
    shown = load_messages(page, 2)
    for message, value, payload in zip(shown, values, payloads):
        assert message["value"]["badge"] == f"avro · schema {schema_id}"
        assert json.loads(message["value"]["text"]) == value
        assert base64.b64decode(message["value"]["base64"]) == payload
        assert message["key"]["badge"] == "text"
    page.shot("avro")
    page.check_log()


# -- 4. lag over time -------------------------------------------------------------------------


def test_lagging_group_chart_rises(page: Page, console_broker: BrokerProcess) -> None:
    bootstrap, url = console_broker.bootstrap, console_broker.console_url  # type: ignore[attr-defined]
    topic = create_topic(bootstrap, unique("lag"), 1)
    produce(bootstrap, topic, [{"value": b"x"}] * 10)
    group = unique("lagging")
    commit(bootstrap, group, topic, {0: 2})

    # the console has sampled this group's lag twice: the first load draws a line
    wait_for_samples(url, f"/api/groups/{quote(group, safe='')}", lambda d: [p for p in d["lag_history"] if p["lag"] == 8])
    page.open(f"#/groups/{quote(group, safe='')}", f"Group {group}")
    last = lambda: page.js("const l = document.querySelector('#lag-chart polyline'); return l ? Number(l.dataset.last) : null")  # noqa: E731
    assert last() == 8
    assert page.text("#total-lag") == "8"
    before = page.js("return document.querySelector('#lag-chart polyline').getAttribute('points')")

    produce(bootstrap, topic, [{"value": b"y"}] * 15)
    # the page refreshes itself every 5 s: the line climbs without a reload
    page.wait(lambda: last() == 8 + 15, "the lag chart to rise to 23")
    assert page.text("#total-lag") == "23"
    assert page.js("return document.querySelector('#lag-chart polyline').getAttribute('points')") != before
    assert page.rows("#lag-table")[0][:5] == [topic, "0", "2", "25", "23"]
    page.shot("group-lag")
    page.check_log()


# -- 5. and 6. the forms ----------------------------------------------------------------------


def test_config_edit_takes_effect(page: Page, console_broker: BrokerProcess) -> None:
    topic = create_topic(console_broker.bootstrap, unique("config"), 1)
    page.open(f"#/topics/{quote(topic, safe='')}/configs", f"Topic {topic}")
    retention = "input[data-config='retention.ms']"
    page.wait(lambda: page.exists(retention), "the configs table")

    page.click("#config-save")  # nothing edited yet
    assert page.message("#config-message") == ("nothing changed", "form-error")

    page.type(retention, "3600000")
    page.click("#config-save")
    page.wait(lambda: page.exists("#config-confirm"), "the confirmation")
    assert "retention.ms = 3600000" in page.text("#config-confirm")
    assert topic_config(console_broker.bootstrap, topic, "retention.ms") == DEFAULT_RETENTION_MS, "reviewing changed nothing yet"
    page.click("#config-apply")
    # the page reloads the topic: the new value, set on the topic itself
    page.wait(lambda: not page.exists("#config-confirm") and page.js(f"return document.querySelector(\"{retention}\").value") == "3600000",
              "the new value on the page")
    assert [r[2] for r in page.rows("#configs-table") if r[0] == "retention.ms"] == ["topic"]
    assert topic_config(console_broker.bootstrap, topic, "retention.ms") == "3600000"
    page.shot("configs-changed")
    page.check_log()


def test_bad_config_is_refused(page: Page, console_broker: BrokerProcess) -> None:
    topic = create_topic(console_broker.bootstrap, unique("badconfig"), 1)
    page.open(f"#/topics/{quote(topic, safe='')}/configs", f"Topic {topic}")
    page.wait(lambda: page.exists("input[data-config='retention.ms']"), "the configs table")
    page.type("input[data-config='retention.ms']", "abc")
    page.click("#config-save")
    text, kind = page.message("#config-message")
    assert kind == "form-error" and "retention.ms" in text, text
    assert not page.exists("#config-confirm")
    assert topic_config(console_broker.bootstrap, topic, "retention.ms") == DEFAULT_RETENTION_MS
    page.shot("configs-refused")
    page.check_log(page.failed_fetch(f"/api/topics/{quote(topic, safe='')}/configs", 400))


def test_bad_browse_input_is_refused(page: Page, exact_topic: str) -> None:
    page.open(f"#/topics/{quote(exact_topic, safe='')}/messages", f"Topic {exact_topic}")
    page.select("#browse-mode", "offset")
    page.type("#browse-from", "abc")
    page.click("#browse-load")
    text, kind = page.message("#browse-message")
    assert kind == "form-error" and "offset must be an integer" in text, text
    assert not page.exists("#messages-table")
    page.check_log(page.failed_fetch(f"/api/topics/{quote(exact_topic, safe='')}/messages?", 400))

    page.select("#browse-mode", "timestamp")
    page.type("#browse-from", "not a time")
    page.click("#browse-load")
    page.wait(lambda: page.text("#browse-message") == "not a time is not a time", "the time refused")
    assert page.js("return document.getElementById('browse-message').className") == "form-error"
    page.type("#browse-from", "")
    page.click("#browse-load")
    page.wait(lambda: page.text("#browse-message") == "(empty) is not a time", "an empty time refused")
    assert not page.exists("#messages-table")
    page.shot("messages-refused")
    page.check_log()  # refused in the page: no request went out


def test_produce_form_refuses_bad_headers_and_sends_good_ones(page: Page, console_broker: BrokerProcess) -> None:
    bootstrap, url = console_broker.bootstrap, console_broker.console_url  # type: ignore[attr-defined]
    topic = create_topic(bootstrap, unique("produce"), 2)
    page.open(f"#/topics/{quote(topic, safe='')}/produce", f"Topic {topic}")
    page.select("#produce-partition", "1")
    page.type("#produce-key", "k1")
    page.type("#produce-value", "hello from the console ✓")
    page.type("#produce-headers", "good=1\nno equals sign")
    page.click("#produce-send")
    assert page.message("#produce-message") == ('header line "no equals sign" is not name=value', "form-error")
    page.type("#produce-headers", "=no name")
    page.click("#produce-send")
    page.wait(lambda: page.text("#produce-message") == 'header line "=no name" is not name=value', "a nameless header refused")
    assert end_offsets(url, topic) == {0: 0, 1: 0}, "nothing was written"
    page.shot("produce-refused")
    page.check_log()

    page.type("#produce-headers", "trace=a=b\nempty=")
    page.click("#produce-send")
    page.wait(lambda: page.text("#produce-message") == "written to partition 1 at offset 0", "the message written")
    assert page.js("return document.getElementById('produce-message').className") == "form-ok"
    page.shot("produce-sent")
    page.check_log()

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"), "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 1, 0)])
        deadline, message = time.monotonic() + WAIT, None
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(0.5)
        assert message is not None and message.error() is None, message and message.error()
        assert (message.key(), message.value(), message.headers()) == (b"k1", "hello from the console ✓".encode(), [("trace", b"a=b"), ("empty", b"")])
    finally:
        consumer.close()
    assert end_offsets(url, topic) == {0: 0, 1: 1}


def test_reset_is_refused_while_the_group_has_members(page: Page, console_broker: BrokerProcess) -> None:
    bootstrap = console_broker.bootstrap
    topic = create_topic(bootstrap, unique("members"), 1)
    produce(bootstrap, topic, [{"value": b"m"}] * 5)
    group = unique("active")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + WAIT
        while not consumer.assignment():
            assert time.monotonic() < deadline, "the consumer never got its partition"
            consumer.poll(0.2)
        consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)

        page.open(f"#/groups/{quote(group, safe='')}", f"Group {group}")
        assert page.text("#group-state") == "Stable"
        assert len(page.rows("#members-table")) == 1
        page.click("#reset-value")  # a focused form holds the page's refresh off
        page.select("#reset-to", "earliest")
        page.click("#reset-plan-button")
        text, kind = page.message("#reset-message")
        assert kind == "form-error" and "members" in text, text
        assert not page.exists("#reset-plan-table")
        page.shot("reset-refused")
        page.check_log(page.failed_fetch(f"/api/groups/{quote(group, safe='')}/reset", 409))
        assert committed(bootstrap, group, topic, 1) == {0: 1}
    finally:
        consumer.close()


def test_reset_plan_then_execute_for_an_empty_group(page: Page, console_broker: BrokerProcess) -> None:
    bootstrap = console_broker.bootstrap
    topic = create_topic(bootstrap, unique("reset"), 2)
    produce(bootstrap, topic, [{"partition": p, "value": b"r"} for p in range(2) for _ in range(10)])
    group = unique("idle")
    commit(bootstrap, group, topic, {0: 8, 1: 9})

    page.open(f"#/groups/{quote(group, safe='')}", f"Group {group}")
    assert page.text("#group-state") == "Empty"
    page.click("#reset-value")
    page.select("#reset-topic", topic)
    page.select("#reset-to", "offset")
    page.type("#reset-value", "abc")
    page.click("#reset-plan-button")
    assert page.message("#reset-message") == ("abc is not an offset", "form-error")
    assert not page.exists("#reset-plan-table")
    page.check_log()  # refused in the page

    page.type("#reset-value", "3")
    page.click("#reset-plan-button")
    page.wait(lambda: page.exists("#reset-plan-table"), "the plan")
    assert page.text("#reset-message") == "Dry run: nothing changed yet."
    assert page.rows("#reset-plan-table") == [[topic, "0", "8", "3"], [topic, "1", "9", "3"]]
    assert committed(bootstrap, group, topic, 2) == {0: 8, 1: 9}, "a plan changes nothing"
    page.shot("reset-plan")
    page.click("#reset-execute")
    page.wait(lambda: page.text("#reset-message") == "Offsets reset.", "the reset done")
    assert committed(bootstrap, group, topic, 2) == {0: 3, 1: 3}
    page.wait(lambda: [r[2] for r in page.rows("#lag-table")] == ["3", "3"], "the page to show the new offsets")
    page.shot("reset-done")
    page.check_log()


# -- 7. read-only -----------------------------------------------------------------------------


def test_read_only_console_changes_nothing(browser: WebDriver, tmp_path: Path, artifacts_dir: Path) -> None:
    broker = console_broker_process(tmp_path / "data", **{"console.read.only": "true", "schema.registry.listeners": "-1"}).start()
    try:
        url = broker.console_url  # type: ignore[attr-defined]
        topic = create_topic(broker.bootstrap, unique("ro"), 1)
        produce(broker.bootstrap, topic, [{"key": b"k", "value": b"only one"}])
        group = unique("ro-group")
        commit(broker.bootstrap, group, topic, {0: 0})
        page = Page(browser, url, artifacts_dir)
        name = quote(topic, safe="")

        page.open("#/", "Overview")
        assert page.el("#read-only").is_displayed() and page.text("#read-only") == "read-only"
        page.shot("read-only")
        page.check_log()

        page.open(f"#/topics/{name}/configs", f"Topic {topic}")
        page.wait(lambda: page.exists("#configs-table"), "the configs table")
        assert not page.exists("#config-save")
        assert not page.exists("#configs-table input:not([disabled])")
        assert "Read-only console" in page.text("#main")
        page.check_log()

        page.open(f"#/topics/{name}/produce", f"Topic {topic}")
        assert not page.exists("#produce") and not page.exists("#produce-send")
        assert "Read-only console: no test messages." in page.text("#main")
        page.check_log()

        page.open(f"#/topics/{name}/messages", f"Topic {topic}")  # reading still works
        assert load_messages(page, 1)[0]["value"]["text"] == "only one"
        page.check_log()

        page.open(f"#/groups/{quote(group, safe='')}", f"Group {group}")
        assert not page.exists("#reset") and not page.exists("#reset-plan-button")
        page.shot("read-only-group")
        page.check_log()

        # and the API refuses changes made around the page
        status, document, _ = call(f"{url}/api/topics/{name}/messages", {"partition": 0, "key": None, "value": "sneaky", "headers": []})
        assert (status, document["error"]) == (403, "this console is read-only (console.read.only=true)")
        assert call(f"{url}/api/topics/{name}/configs", {"set": {"retention.ms": "1000"}})[0] == 403
        assert call(f"{url}/api/groups/{quote(group, safe='')}/reset", {"to": "latest", "execute": True})[0] == 403
        assert end_offsets(url, topic) == {0: 1}
        assert topic_config(broker.bootstrap, topic, "retention.ms") == DEFAULT_RETENTION_MS
        assert committed(broker.bootstrap, group, topic, 1) == {0: 0}
    finally:
        broker.stop()


# -- 8. schemas -------------------------------------------------------------------------------


def test_subject_diff_shows_added_lines(page: Page, seeded: Seeded) -> None:
    page.open("#/schemas", "Schemas")
    page.driver.find_element(By.LINK_TEXT, seeded.subject).click()
    page.wait_title(f"Subject {seeded.subject}")
    assert len(page.rows("#versions-table")) == 2
    diff = lambda cls: page.js("return [...document.querySelectorAll(`#diff div.${arguments[0]}`)].map((d) => d.textContent)", cls)  # noqa: E731
    page.wait(lambda: diff("add"), "the diff of version 1 to 2")
    assert [s for s in diff("add") if "email" in s] == ['+      "name": "email",'], diff("add")
    assert not [s for s in diff("del") if "email" in s]
    assert "+++ version 2" not in diff("add") and "--- version 1" not in diff("del")  # headers are not changes
    assert "+++ version 2" in page.text("#diff") and "--- version 1" in page.text("#diff")
    page.shot("subject-diff")

    page.select("#diff-from", "2")
    page.select("#diff-to", "1")
    page.wait(lambda: [s for s in diff("del") if "email" in s] == ['-      "name": "email",'], "the diff of version 2 to 1")
    assert not [s for s in diff("add") if "email" in s]
    page.select("#diff-from", "1")
    page.wait(lambda: page.text("#diff") == "(no difference)", "no difference between a version and itself")
    page.check_log()


# -- 9. logins on a SASL broker ---------------------------------------------------------------




def test_login_with_a_sasl_user(browser: WebDriver, tmp_path: Path, artifacts_dir: Path) -> None:
    from tests.console.conftest import sasl_console_broker

    broker = sasl_console_broker(tmp_path)
    try:
        page = Page(browser, broker.console_url, artifacts_dir)  # type: ignore[attr-defined]
        page.open("#/topics", "Log in")
        page.shot("login")
        page.type("#login input[name=username]", "admin")
        page.type("#login input[name=password]", "wrong")
        page.click("#login button[type=submit]")
        text, css = page.message("#login-error")
        assert "login refused" in text and css == "form-error"
        page.check_log(page.failed_fetch("/api/login", 401))
        page.type("#login input[name=password]", "admin-secret")
        page.click("#login button[type=submit]")
        page.wait_title("Topics")  # where the user was going
        assert "admin" in (page.text("#who") or "")
        page.check_log()
        page.click("#who button")
        page.wait_title("Log in")
        page.check_log()
    finally:
        broker.stop()
