"""The human view of a sandbox: ``GET /`` renders its threads as one small HTML page.

Post text is untrusted (it is whatever the daemon was told to publish), so every value
goes through ``html.escape`` before it reaches the page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from .http import Post, utc_iso

_STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 46em; color: #222; }
h1 { font-size: 1.3em; }
.meta { color: #666; font-size: 0.85em; }
ol.thread { border-left: 3px solid #8ab; margin: 1.5em 0; padding-left: 1.2em; }
ol.thread li { margin: 0.6em 0; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; }
.deleted .text { text-decoration: line-through; color: #999; }
.empty { color: #666; font-style: italic; }
"""


def render_threads(
    *,
    title: str,
    threads: Mapping[str, Sequence[Post]],
    notes: Sequence[str] = (),
    refresh_seconds: int = 5,
) -> str:
    """One page listing every thread, newest thread first, each in reading order."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    parts.extend(f'<p class="meta">{escape(note)}</p>' for note in notes)
    if not threads:
        parts.append('<p class="empty">Nothing posted yet.</p>')
    for chain in reversed(list(threads.values())):
        parts.append('<ol class="thread">')
        for post in chain:
            css = ' class="deleted"' if post.deleted else ""
            meta = [
                f"@{post.account}",
                f"id {post.id}",
                utc_iso(post.created_at, digits=0),
            ]
            if post.language:
                meta.append(post.language)
            if post.deleted:
                meta.append("deleted")
            parts.append(
                f'<li{css}><div class="text">{escape(post.text)}</div>'
                f'<div class="meta">{escape(" · ".join(meta))}</div></li>'
            )
        parts.append("</ol>")
    parts.append("</body></html>")
    return "\n".join(parts)
