"""The broker's log lines: text by default, JSON lines with `log.format=json`.

Request context travels as `extra={"peer": ..., "api": ..., "correlation_id": ...}` on a log
call; the text format appends it as `key=value` pairs, the JSON format adds it as fields:

    {"time": "2026-01-02T03:04:05.678Z", "level": "ERROR", "logger": "fastlog.server",
     "message": "...", "peer": "127.0.0.1:50000", "api": "FetchRequest", "correlation_id": 7,
     "exception": "Traceback ..."}
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

CONTEXT_FIELDS = ("peer", "api", "api_version", "correlation_id", "client_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {key: getattr(record, key) for key in CONTEXT_FIELDS if getattr(record, key, None) is not None}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        # The context the message does not already show, on the message line (before any traceback).
        context = {k: v for k, v in _context(record).items() if str(v) not in message}
        if not context:
            return super().format(record)
        saved = record.msg, record.args
        record.msg = f"{message} [{' '.join(f'{k}={v}' for k, v in context.items())}]"
        record.args = None
        try:
            return super().format(record)
        finally:
            record.msg, record.args = saved


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_context(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str = "INFO", fmt: str = "text", stream: TextIO = sys.stderr) -> None:
    """Sends every log line to `stream` in `fmt` ("text" or "json"), replacing earlier set-up."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
