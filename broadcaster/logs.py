"""Logging set-up: readable by default, JSON lines for aggregators, and never a secret.

Every credential loaded from the config is registered here; any log record that would
contain one (in its message, arguments or traceback) has it replaced by ``***``.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Never show ``value``: nor as quoted by ``repr()`` or JSON (a secret holding ``'``,
    ``"`` or ``\\`` reads differently there), in any log line, error or answer."""
    # Very short values would redact ordinary words; credentials are never that short.
    if len(value) >= 6:
        forms = {value, repr(value)[1:-1], json.dumps(value)[1:-1]}
        forms |= {json.dumps(form)[1:-1] for form in list(forms)}
        with _lock:
            _secrets.update(forms)


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def redact_value(value: Any) -> Any:
    """``value`` with every secret in its strings (keys included) replaced by ``***``."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def redact_json(value: Any) -> str:
    """JSON of ``value``, redacted before escaping: a secret holding ``"`` or ``\\``
    is still found, which it would not be once escaped."""
    return json.dumps(redact_value(value), ensure_ascii=False)


class _Redacting(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return redact_json(entry)


def configure(fmt: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_Json())
    else:
        handler.setFormatter(_Redacting("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # APScheduler logs every job run at INFO: noise at a poll every 250 ms.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # "maximum number of running instances reached": a poll still running when the next is
    # due is skipped on purpose (coalesced); not worth a warning each time.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
    # uvicorn warns of every malformed request: a scanner would flood the log. We answer
    # them all (400, 408); its errors still show.
    logging.getLogger("uvicorn").setLevel(logging.ERROR)
