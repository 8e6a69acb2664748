"""The dry-run channel: shows exactly what would be posted, and publishes nothing.

A dry-run twin keeps the real channel's platform, language, length rule and thread
structure, so what it prints is what the real channel would send.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from ..clock import utcnow
from ..textfit import LengthRule
from .base import Channel, PublishRequest, PublishResult

BANNER = "DRY RUN — not published"


class DryRunJournal:
    """``dry-run.jsonl``: one JSON object per post, shared by every dry-run channel."""

    def __init__(self, path: Path, out: TextIO | None = None) -> None:
        self.path = path
        self.out = out if out is not None else sys.stdout
        self._lock = threading.Lock()
        self._keys: dict[str, str] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line torn by a crash mid-write was never published
                self._keys[record["idempotency_key"]] = record["id"]
        self.found = len(self._keys)  # what earlier dry runs published

    @property
    def published(self) -> int:
        """Parts the journal holds: what earlier dry runs already "published"."""
        with self._lock:
            return len(self._keys)

    def find(self, key: str) -> str | None:
        with self._lock:
            return self._keys.get(key)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False)
        with self._lock:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
            self._keys[record["idempotency_key"]] = record["id"]
            self.out.write(_pretty(record))
            self.out.flush()


def _pretty(r: dict[str, Any]) -> str:
    part = f" · part {r['part']}/{r['parts']}" if r["parts"] > 1 else ""
    thread = f"reply to {r['reply_to']}" if r["reply_to"] else "new thread"
    head = (
        f"── {BANNER} ── {r['channel']} ({r['platform']}, {r['language']}) · "
        f"{r['incident_id']} · {r['kind']}{part} · {r['length']}/{r['limit']} · {thread}"
    )
    return f"{head}\n{r['text']}\n\n"


class DryRunChannel(Channel):
    def __init__(
        self,
        name: str,
        platform: str,
        language: str,
        rule: LengthRule,
        journal: DryRunJournal,
    ) -> None:
        self.name = name
        self.platform = platform
        self.language = language
        self._rule = rule
        self.journal = journal

    def length_rule(self) -> LengthRule:
        return self._rule

    def publish(self, request: PublishRequest) -> PublishResult:
        post = request.post
        remote_id = f"dry-{post.key}"
        self.journal.append(
            {
                "at": utcnow().isoformat(timespec="milliseconds"),
                "channel": self.name,
                "platform": self.platform,
                "language": self.language,
                "incident_id": post.incident_id,
                "kind": post.kind.value,
                "part": post.part,
                "parts": post.parts,
                "text": post.text,
                "length": post.length,
                "limit": post.limit,
                "reply_to": request.parent_key,
                "idempotency_key": post.key,
                "id": remote_id,
                "planned_at": post.planned_at.isoformat(),
                "next_update_at": (
                    post.next_update_at.isoformat() if post.next_update_at else None
                ),
            }
        )
        return PublishResult(remote_id=remote_id)

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        remote_id = self.journal.find(request.idempotency_key)
        return PublishResult(remote_id=remote_id) if remote_id else None
