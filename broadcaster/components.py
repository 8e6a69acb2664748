"""``App``: the components that serve one configuration, built by ``app.build`` and closed
together. The daemon swaps a whole ``App`` at each reload."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass, field

from .channels.base import Channel
from .config import Config
from .delivery import Delivery
from .editor import Editor
from .render import Renderer
from .sources.base import PullSource
from .store import DataStore

log = logging.getLogger("broadcaster.app")


@dataclass
class App:
    config: Config
    store: DataStore
    renderer: Renderer
    editor: Editor
    channels: dict[str, Channel]
    delivery: Delivery
    sources: list[PullSource]  # polled by the daemon; the HTTP intake belongs to the shell
    dry_run: bool
    # What ``build`` opened (channels, store, sources), closed in reverse order.
    resources: ExitStack = field(default_factory=ExitStack)
    _wait: float = field(default=10.0, init=False, repr=False)

    def __post_init__(self) -> None:
        # Last registered, so first closed: the workers stop before anything they use.
        self.resources.callback(self._stop_delivery)

    def close(self, *, wait: float = 10.0) -> None:
        """Stop delivery within ``wait`` seconds (shared by all workers), then close the
        sources, the store and the channels."""
        self._wait = wait
        self.resources.close()

    def _stop_delivery(self) -> None:
        if not self.delivery.stop(self._wait):
            log.warning(
                "a post was still in flight after %.0fs; it will be checked on the "
                "platform before any re-send",
                self._wait,
            )
