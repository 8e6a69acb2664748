"""The drafting console: a separate process that edits the state file through the same
code as ``draft --write`` and shows, while people type, what every channel will post."""

from .app import create_app

__all__ = ["create_app"]
