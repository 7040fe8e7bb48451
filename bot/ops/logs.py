"""Log formats: human-readable lines by default, or LOG_FORMAT=json, one JSON object per line."""

from __future__ import annotations

import datetime as dt
import json
import logging

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Context a log call may attach with `extra={...}`; always present in JSON (null when absent), so a log
# aggregator's field list stays the same whatever the line.
CONTEXT_KEYS = ("guild", "channel", "command", "latency")


class JsonFormatter(logging.Formatter):
    """One JSON object per record with stable keys: time, level, logger, event, guild, channel, command,
    latency; `exception` is added when the record carries one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            line[key] = getattr(record, key, None)
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter_for(log_format: str) -> logging.Formatter:
    """The formatter for LOG_FORMAT (`text` or `json`)."""
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(level: str, log_format: str = "text") -> None:
    """The root logger writes to stderr in `log_format` at `level`."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter_for(log_format))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    # The HTTP clients log request bodies at DEBUG only; keep them quiet even when LOG_LEVEL=DEBUG.
    for noisy in ("httpx2", "httpcore", "openai._base_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
