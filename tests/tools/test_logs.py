"""Log line formats: text with the request context appended, or JSON lines."""

from __future__ import annotations

import io
import json
import logging

from fastlog import logs


def emit(fmt: str) -> str:
    out = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("INFO", fmt, out)
        log = logging.getLogger("fastlog.test")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("Fetch v%d failed", 12, extra={"peer": "10.0.0.1:5000", "api": "FetchRequest", "correlation_id": 7})
        log.info("plain line")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    return out.getvalue()


def test_text_appends_context() -> None:
    text = emit("text")
    first = text.splitlines()[0]
    assert first.endswith("ERROR fastlog.test: Fetch v12 failed [peer=10.0.0.1:5000 api=FetchRequest correlation_id=7]")
    assert "RuntimeError: boom" in text and text.splitlines()[-1].endswith("INFO fastlog.test: plain line")


def test_json_lines() -> None:
    error, info = [json.loads(line) for line in emit("json").splitlines()]
    assert error["level"] == "ERROR" and error["message"] == "Fetch v12 failed" and error["logger"] == "fastlog.test"
    assert error["peer"] == "10.0.0.1:5000" and error["api"] == "FetchRequest" and error["correlation_id"] == 7
    assert "RuntimeError: boom" in error["exception"] and error["time"].endswith("Z")
    assert info == {"time": info["time"], "level": "INFO", "logger": "fastlog.test", "message": "plain line"}
