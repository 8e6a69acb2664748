"""Delivery: one worker thread per channel takes recorded posts to the platform.

Each channel delivers its posts strictly in the order they were planned, one at a time, so
a reply never overtakes its parent. A slow or dead platform only holds up its own worker.
A post is marked sent only once the platform confirmed it; a post whose outcome is unknown
(timeout, dropped connection, crash) is looked for on the platform before being re-sent.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from .channels.base import (
    Channel,
    ChannelUnhealthy,
    DeliveryError,
    PublishRequest,
    RateLimited,
    Rejected,
    RepliesRefused,
    TransientError,
)
from .clock import Clock, utcnow
from .model import OutboxPost, PostState
from .planner import reply_target
from .store import ChannelChange, DataStore

log = logging.getLogger("broadcaster.delivery")


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, capped: polite to a platform that is struggling."""

    base: float = 1.0
    cap: float = 300.0
    unhealthy_retry: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.cap, self.base * (2.0 ** max(0, attempt - 1)))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class Budget:
    """Our own posting budget, kept below the platform's so a normal run never sees a 429."""

    max_posts: int | None = None
    window: timedelta | None = None
    min_interval: timedelta | None = None

    def next_slot(self, sent: list[datetime], now: datetime) -> datetime | None:
        """When the next post may go, given recent send times (oldest first); None = now."""
        earliest: datetime | None = None
        if self.min_interval is not None and sent:
            earliest = sent[-1] + self.min_interval
        if self.max_posts is not None and self.window is not None:
            recent = [t for t in sent if t > now - self.window]
            if len(recent) >= self.max_posts:
                slot = recent[len(recent) - self.max_posts] + self.window
                earliest = slot if earliest is None else max(earliest, slot)
        return earliest if earliest is not None and earliest > now else None

    @property
    def horizon(self) -> timedelta:
        return max(self.window or timedelta(0), self.min_interval or timedelta(0))


class ChannelWorker:
    def __init__(
        self,
        channel: Channel,
        store: DataStore,
        *,
        clock: Clock = utcnow,
        backoff: Backoff | None = None,
        budget: Budget | None = None,
        on_sent: Callable[[OutboxPost, str], None] | None = None,
    ) -> None:
        self.channel = channel
        self.budget = budget or Budget()
        self.store = store
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.on_sent = on_sent
        # A pause survives restarts: the platform's reset time does not move because we did.
        known = store.channel_state(channel.name)
        self.paused_until: datetime | None = known.paused_until
        # Kept in memory so any later success marks the channel healthy again, even when
        # the post that met the refusal was itself refused for good or superseded.
        self._healthy: bool = known.healthy
        # Once the platform refused a reply, later posts go standalone (each request says
        # so); remembered across restarts.
        self._replies_refused: bool = known.replies_refused
        # Consecutive failures on this channel: the backoff grows with them even while only
        # the look-up of an unknown outcome fails (which does not count as an attempt).
        self._failures = 0
        self._rng = random.Random()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"deliver-{channel.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    @property
    def replies_refused(self) -> bool:
        """Whether this channel's posts go standalone because replies were refused."""
        return self._replies_refused

    def request_stop(self) -> None:
        """Stop between posts, without waiting (see ``stop`` and ``join``)."""
        self._stop.set()
        self._wake.set()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        self.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except Exception:  # a bug must not end delivery for good
                log.exception("delivery on %s failed unexpectedly", self.channel.name)
                wait = self.backoff.unhealthy_retry
            if wait is None:
                wait = 5.0
            if wait > 0:
                self._wake.wait(wait)
            self._wake.clear()

    def step(self) -> float | None:
        """Deliver at most one post. Returns seconds until the next try, None if idle."""
        now = self.clock()
        if self.paused_until is not None and now < self.paused_until:
            return (self.paused_until - now).total_seconds()
        post = self.store.next_to_deliver(self.channel.name)
        if post is None:
            return None
        if post.next_attempt_at is not None and now < post.next_attempt_at:
            return (post.next_attempt_at - now).total_seconds()
        if self.budget.horizon:
            slot = self.budget.next_slot(
                self.store.sent_times(self.channel.name, now - self.budget.horizon), now
            )
            if slot is not None:
                return (slot - now).total_seconds()
        planned = self.store.post(post.reply_to_key) if post.reply_to_key else None
        parent = reply_target(planned, self.store.latest_sent_before(post))
        root = self.store.thread_root(post.incident_id, post.channel)
        request = PublishRequest(
            post=post,
            in_reply_to=parent.remote_id if parent else None,
            parent_key=parent.key if parent else None,
            thread_root=root.remote_id if root else None,
            thread_root_url=root.remote_url if root else None,
            replies_refused=self._replies_refused,
        )
        # Whether an earlier attempt may have published this post. Until the platform has
        # been looked at, every refusal below must keep it "sending", or a later try would
        # skip the look-up and could publish it a second time.
        unknown = post.state is PostState.SENDING
        try:
            if unknown:
                # The platform may have the post already; a second copy would be worse than none.
                found = self.channel.find_published(request)
                if found is not None:
                    log.info(
                        "%s: %s was already published as %s",
                        self.channel.name,
                        post.key,
                        found.remote_id,
                    )
                    self._sent(post, found.remote_id, found.url)
                    return 0
                unknown = False
            if not self.store.mark_sending(post.key):
                return 0  # superseded since it was picked: a newer post goes instead
            result = self.channel.publish(request)
        except RateLimited as e:
            self.paused_until = e.until
            self.store.retry_later(post.key, str(e), e.until, outcome_unknown=unknown)
            self.store.update_channel(
                self.channel.name, ChannelChange(paused_until=e.until, last_error=str(e)), now
            )
            log.warning("%s: rate limited until %s", self.channel.name, e.until.isoformat())
            return max(0.0, (e.until - self.clock()).total_seconds())
        except ChannelUnhealthy as e:
            self._healthy = False
            retry = now + timedelta(seconds=self.backoff.unhealthy_retry)
            self.store.retry_later(post.key, str(e), retry, outcome_unknown=unknown)
            self.store.update_channel(
                self.channel.name, ChannelChange(healthy=False, last_error=str(e)), now
            )
            log.error("%s: channel unhealthy, posts kept pending: %s", self.channel.name, e)
            return self.backoff.unhealthy_retry
        except RepliesRefused as e:
            # The platform no longer accepts our replies: post standalone from now on.
            self._replies_refused = True
            self.store.retry_later(post.key, str(e), now, outcome_unknown=unknown)
            self.store.update_channel(
                self.channel.name, ChannelChange(replies_refused=True, last_error=str(e)), now
            )
            log.warning(
                "%s: replies refused; posting standalone posts that link the thread",
                self.channel.name,
            )
            return 0
        except Rejected as e:
            if unknown:
                # The look-up was refused, not the post: it may still be out there.
                return self._retry(post, e, now)
            self.store.mark_failed(post.key, str(e))
            self.store.update_channel(self.channel.name, ChannelChange(last_error=str(e)), now)
            log.error("%s: %s refused for good: %s", self.channel.name, post.key, e)
            return 0
        except (TransientError, DeliveryError) as e:
            return self._retry(post, e, now)
        self._sent(post, result.remote_id, result.url)
        if result.not_before is not None:
            # The server says the window is spent: wait rather than collect a 429.
            self.paused_until = result.not_before
            self.store.update_channel(
                self.channel.name, ChannelChange(paused_until=result.not_before), now
            )
            return max(0.0, (result.not_before - self.clock()).total_seconds())
        return 0

    def _retry(self, post: OutboxPost, error: DeliveryError, now: datetime) -> float:
        """Outcome unknown: keep the post 'sending' so that it is looked for before re-sending."""
        self._failures += 1
        delay = self.backoff.delay(self._failures, self._rng)
        retry = now + timedelta(seconds=delay)
        self.store.retry_later(post.key, str(error), retry, outcome_unknown=True)
        self.store.update_channel(self.channel.name, ChannelChange(last_error=str(error)), now)
        log.warning(
            "%s: %s not confirmed (%s); retry in %.2fs", self.channel.name, post.key, error, delay
        )
        return delay

    def _sent(self, post: OutboxPost, remote_id: str, url: str | None) -> None:
        now = self.clock()
        self.store.mark_sent(post.key, remote_id, url, now)
        log.info("%s: sent %s: %s", self.channel.name, post.key, url or f"id {remote_id}")
        self._failures = 0
        if self.paused_until is not None or post.last_error or not self._healthy:
            self.paused_until = None
            self._healthy = True
            self.store.update_channel(self.channel.name, ChannelChange(recovered=True), now)
        if self.on_sent:
            self.on_sent(post, remote_id)


class Delivery:
    """All channel workers, started and stopped together."""

    def __init__(self, workers: Mapping[str, ChannelWorker]) -> None:
        self.workers = dict(workers)

    def start(self) -> None:
        for worker in self.workers.values():
            worker.start()

    def wake(self, channel: str | None = None) -> None:
        for name, worker in self.workers.items():
            if channel is None or name == channel:
                worker.wake()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop every worker within one shared deadline; False if a post is still in flight.

        A worker stops between posts; one caught mid-request finishes it (bounded by the
        channel's HTTP timeout). Were the process killed then, the post is left 'sending'
        and looked for on the platform at the next start, never blindly re-sent.
        """
        for worker in self.workers.values():
            worker.request_stop()
        deadline = time.monotonic() + timeout
        for worker in self.workers.values():
            worker.join(max(0.0, deadline - time.monotonic()))
        return not any(w.is_alive() for w in self.workers.values())
