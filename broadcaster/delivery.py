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
from .planner import Budget as Budget  # re-exported: the budget is planning policy
from .planner import reply_target
from .store import ChannelChange, DataStore, Lease, LeaseLost, StoreUnavailable

log = logging.getLogger("broadcaster.delivery")


def default_instance() -> str:
    """This instance's name in leases and ``status`` unless the config names it."""
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def lease_holder(instance: str) -> str:
    """The name this process holds leases under: ``instance`` and a tag of its own, so that
    two instances given the same name (one config copied to both) never both hold a
    channel, and a restarted instance never inherits its dead predecessor's lease."""
    import secrets

    return f"{instance}#{secrets.token_hex(3)}"


class ChannelLease:
    """This instance's hold on one channel: taken, renewed (the heartbeat) and checked.

    Renewed once a third of the TTL has passed. The local deadline is counted from before
    the request that took the lease, on the monotonic clock, so it never outlasts the
    store's: a post is sent only while at least a third of the TTL is left, so a holder
    that stalls between its ``sending`` mark and its request has that long before another
    instance may take over (and looks the post up first, since it is marked ``sending``).
    A stall longer than that is caught by ``still_holds``: the lease checked before the
    request must be the very one (same fencing token) the post was marked under.

    A holder cut off from the store (not dead) may still be waiting for the platform's
    answer when its lease runs out: after a takeover, a post it left ``sending`` is looked
    up only once ``settle`` has passed (the longest a request of its can last), so the
    look-up cannot miss a post that is still on its way.
    """

    monotonic: Callable[[], float] = staticmethod(time.monotonic)  # replaced in tests

    def __init__(
        self,
        store: DataStore,
        channel: str,
        holder: str,
        ttl: timedelta,
        settle: timedelta = timedelta(0),
    ) -> None:
        self.store = store
        self.channel = channel
        self.holder = holder
        self.ttl = ttl
        self.settle = settle
        self.current: Lease | None = None
        self._deadline = 0.0
        self._taken_at = 0.0
        self._settled_at = 0.0
        self._last_token: int | None = None
        self.on_change: Callable[[bool, bool], None] | None = None  # (held, takeover)

    def remaining(self) -> float:
        return self._deadline - self.monotonic() if self.current else 0.0

    def usable(self) -> bool:
        """Held, renewed if due; with time left to send a post and mark it."""
        ttl = self.ttl.total_seconds()
        if self.current is None or self.monotonic() - self._taken_at > ttl / 3:
            self._renew()
        return self.current is not None and self.remaining() > ttl / 3

    def settling(self) -> float:
        """Seconds before a post the former holder left ``sending`` may be looked up."""
        return max(0.0, self._settled_at - self.monotonic())

    def still_holds(self, lease: Lease | None) -> bool:
        """``usable`` and still ``lease`` (renewed, never lost in between): had it run out,
        even if this instance took the channel again since, another may have held it and
        sent what this one was about to send."""
        return (
            self.usable()
            and lease is not None
            and self.current is not None
            and self.current.token == lease.token
        )

    def _renew(self) -> None:
        started = self.monotonic()
        before = self.store.leases().get(self.channel) if self.current is None else None
        lease = self.store.acquire_lease(self.channel, self.holder, self.ttl)
        self.store.heartbeat(self.holder, self.ttl)
        if lease is None:
            if self.current is not None:
                self.lost("another instance holds it")
            return
        if self.current is None or lease.token != self.current.token:
            # Another instance held the channel in between unless the fencing token is the
            # one this instance last held or the next (a fresh lease row starts the count).
            # A holder that slept through someone else's whole lease comes back to a token
            # that jumped: that is a takeover too, whoever held it.
            mine = self._last_token is not None and lease.token - self._last_token in (0, 1)
            takeover = not mine and (
                self._last_token is not None
                or (before is not None and before.holder != self.holder)
            )
            if takeover:
                self._settled_at = started + self.settle.total_seconds()
                log.warning(
                    "%s: took the channel over from %s; any post it left 'sending' is looked "
                    "up before a re-send",
                    self.channel,
                    f"{before.holder} (its lease expired at {before.expires_at.isoformat()})"
                    if before is not None and before.holder != self.holder
                    else "another instance",
                )
            else:
                log.info("%s: this instance (%s) delivers it now", self.channel, self.holder)
            if self.on_change:
                self.on_change(True, takeover)
        self.current = lease
        self._last_token = lease.token
        self._taken_at = started
        self._deadline = started + self.ttl.total_seconds()

    def lost(self, why: str) -> None:
        if self.current is not None:
            log.warning("%s: lease lost (%s): this instance stops delivering it", self.channel, why)
            if self.on_change:
                self.on_change(False, False)
        self.current = None

    def release(self) -> None:
        if self.current is not None:
            try:
                self.store.release_lease(self.current)
            except Exception:  # the store is gone: the lease simply runs out
                log.debug("%s: could not release the lease", self.channel, exc_info=True)
            self.current = None


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, capped: polite to a platform that is struggling."""

    base: float = 1.0
    cap: float = 300.0
    unhealthy_retry: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.cap, self.base * (2.0 ** max(0, attempt - 1)))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


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
        holder: str | None = None,
        lease_ttl: timedelta = timedelta(seconds=15),
        on_lease: Callable[[str, bool, bool], None] | None = None,
        settle: timedelta = timedelta(0),
    ) -> None:
        self.channel = channel
        self.lease = ChannelLease(
            store, channel.name, holder or default_instance(), lease_ttl, settle
        )
        if on_lease is not None:
            name = channel.name
            self.lease.on_change = lambda held, takeover: on_lease(name, held, takeover)
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
        # The lease is renewed (the heartbeat) at least three times per TTL, idle or not.
        beat = self.lease.ttl.total_seconds() / 4
        while not self._stop.is_set():
            try:
                wait = self.step()
            except LeaseLost as e:
                self.lease.lost(str(e))
                wait = beat
            except StoreUnavailable as e:
                # Nothing is sent that cannot be recorded first; tried again at each beat.
                log.warning("%s: delivery waits for the store: %s", self.channel.name, e)
                wait = beat
            except Exception:  # a bug, or the store unreachable: never end delivery
                log.exception("delivery on %s failed unexpectedly", self.channel.name)
                wait = min(self.backoff.unhealthy_retry, beat)
            if wait is None:
                wait = 5.0
            wait = min(wait, beat)
            if wait > 0:
                self._wake.wait(wait)
            self._wake.clear()
        self.lease.release()

    def step(self) -> float | None:
        """Deliver at most one post. Returns seconds until the next try, None if idle."""
        now = self.clock()
        if self.paused_until is not None and now < self.paused_until:
            return (self.paused_until - now).total_seconds()
        if not self.lease.usable():
            return self.lease.ttl.total_seconds() / 4  # another instance delivers it
        lease = self.lease.current
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
        if unknown and self.lease.settling() > 0:
            # Taken over from a holder that may only be cut off: its request for this post
            # may still reach the platform. Look it up once that request must have ended.
            return self.lease.settling()
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
                    self._sent(post, found.remote_id, found.url, lease)
                    return 0
                unknown = False
            if not self.store.mark_sending(post.key, lease=lease):
                return 0  # superseded since it was picked: a newer post goes instead
            if not self.lease.still_holds(lease):
                # Stalled since the check (a pause, a slow store): too late to be sure no
                # other instance took over, or one did and may have sent it. The post stays
                # 'sending': looked up, not re-sent.
                return 0
            result = self.channel.publish(request)
        except RateLimited as e:
            self.paused_until = e.until
            self.store.retry_later(post.key, str(e), e.until, outcome_unknown=unknown, lease=lease)
            self.store.update_channel(
                self.channel.name, ChannelChange(paused_until=e.until, last_error=str(e)), now
            )
            log.warning("%s: rate limited until %s", self.channel.name, e.until.isoformat())
            return max(0.0, (e.until - self.clock()).total_seconds())
        except ChannelUnhealthy as e:
            self._healthy = False
            retry = now + timedelta(seconds=self.backoff.unhealthy_retry)
            self.store.retry_later(post.key, str(e), retry, outcome_unknown=unknown, lease=lease)
            self.store.update_channel(
                self.channel.name, ChannelChange(healthy=False, last_error=str(e)), now
            )
            log.error("%s: channel unhealthy, posts kept pending: %s", self.channel.name, e)
            return self.backoff.unhealthy_retry
        except RepliesRefused as e:
            # The platform no longer accepts our replies: post standalone from now on.
            self._replies_refused = True
            self.store.retry_later(post.key, str(e), now, outcome_unknown=unknown, lease=lease)
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
                return self._retry(post, e, now, lease)
            self.store.mark_failed(post.key, str(e), lease=lease)
            self.store.update_channel(self.channel.name, ChannelChange(last_error=str(e)), now)
            log.error("%s: %s refused for good: %s", self.channel.name, post.key, e)
            return 0
        except (TransientError, DeliveryError) as e:
            return self._retry(post, e, now, lease)
        self._sent(post, result.remote_id, result.url, lease)
        if result.not_before is not None:
            # The server says the window is spent: wait rather than collect a 429.
            self.paused_until = result.not_before
            self.store.update_channel(
                self.channel.name, ChannelChange(paused_until=result.not_before), now
            )
            return max(0.0, (result.not_before - self.clock()).total_seconds())
        return 0

    def _retry(
        self, post: OutboxPost, error: DeliveryError, now: datetime, lease: Lease | None
    ) -> float:
        """Outcome unknown: keep the post 'sending' so that it is looked for before re-sending."""
        self._failures += 1
        delay = self.backoff.delay(self._failures, self._rng)
        retry = now + timedelta(seconds=delay)
        self.store.retry_later(post.key, str(error), retry, outcome_unknown=True, lease=lease)
        self.store.update_channel(self.channel.name, ChannelChange(last_error=str(error)), now)
        log.warning(
            "%s: %s not confirmed (%s); retry in %.2fs", self.channel.name, post.key, error, delay
        )
        return delay

    def _sent(self, post: OutboxPost, remote_id: str, url: str | None, lease: Lease | None) -> None:
        now = self.clock()
        self.store.mark_sent(post.key, remote_id, url, now, lease=lease)
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
