"""LOG_FORMAT=json: one JSON object per line with stable keys; the default stays human-readable."""

from __future__ import annotations

import json
import logging

from bot.ops.logs import JsonFormatter, formatter_for

KEYS = ["time", "level", "logger", "event", "guild", "channel", "command", "latency"]


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("bot.test", logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_json_lines_have_the_stable_keys_with_nulls_for_missing_context() -> None:
    line = JsonFormatter().format(record("applied %s", "0001_x.sql"))
    assert "\n" not in line
    parsed = json.loads(line)
    assert list(parsed) == KEYS
    assert parsed["level"] == "INFO" and parsed["logger"] == "bot.test"
    assert parsed["event"] == "applied 0001_x.sql"
    assert parsed["guild"] is None and parsed["latency"] is None
    assert parsed["time"].endswith("+00:00")


def test_json_lines_carry_the_context_and_the_exception_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        made = record("/ask failed", command="ask", guild=1, channel=2, latency=0.25)
        made.exc_info = sys.exc_info()
    parsed = json.loads(JsonFormatter().format(made))
    assert (parsed["command"], parsed["guild"], parsed["channel"], parsed["latency"]) == ("ask", 1, 2, 0.25)
    assert "ValueError: boom" in parsed["exception"]


def test_text_is_the_default() -> None:
    line = formatter_for("text").format(record("hello"))
    assert line.endswith("INFO    bot.test: hello")
