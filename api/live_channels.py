"""The streams' side of live values: one channel per streamed dataset, fed by commit notices and a poll.

A channel knows the dataset's newest version and tells each subscribed client
about every newer one by putting its number into the client's bounded queue,
without ever waiting: a client whose queue is full (it fell
``stream_buffer_versions`` versions behind) is dropped, so a slow client never
holds up the channel or the other clients. Each client reads the rows of the
versions it was told about itself (``api.routes.live``).

Commits of this process arrive as notices (``catalogue.commit_notices``,
handed to the event loop with ``call_soon_threadsafe``), and so do the commits
of other replicas and workers on a PostgreSQL catalogue (``catalogue.pg_notices``
hands them to the same broker); any notice lost on the way is made up for by a
look at the current version every ``stream_poll_s`` seconds. A look is one indexed query that never blocks the loop
(``LoopReads``), and a channel runs only while it has clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from catalogue.commit_notices import COMMITS
from catalogue.meta.loop_reads import LoopReads

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Subscriber:
    """One stream client: the version numbers it is still to send (bounded), and whether it was dropped."""

    dataset: str
    queue: asyncio.Queue[int]
    dropped: bool = False


@dataclass(eq=False)
class Channel:
    """The clients of one dataset and the newest version they were told about."""

    dataset: str
    newest: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    subscribers: set[Subscriber] = field(default_factory=set)
    pump: asyncio.Task[None] | None = None


class LiveChannels:
    """Every channel of one app, on its event loop."""

    def __init__(self, reads: LoopReads, *, poll_s: float, buffer_versions: int) -> None:
        self.reads = reads
        self.poll_s = poll_s
        self.buffer_versions = buffer_versions
        self.channels: dict[str, Channel] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def newest(self, dataset: str) -> int:
        """The dataset's current version number (0: none yet)."""
        identity = await self.reads.identity(dataset, None)
        return identity[0] if identity is not None else 0

    async def subscribe(self, dataset: str) -> tuple[Subscriber, int]:
        """A new client of ``dataset``'s channel and the newest version the channel knows now."""
        channel = self.channels.get(dataset)
        if channel is None:
            channel = Channel(dataset, await self.newest(dataset))
            channel = self.channels.setdefault(dataset, channel)  # another client may have made it meanwhile
        subscriber = Subscriber(dataset, asyncio.Queue(self.buffer_versions))
        channel.subscribers.add(subscriber)
        if channel.pump is None or channel.pump.done():  # a channel whose clients were all dropped has stopped
            self._listen()
            channel.pump = asyncio.create_task(self._pump(channel), name=f"live:{dataset}")
        return subscriber, channel.newest

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a client; its channel stops when it was the last one."""
        channel = self.channels.get(subscriber.dataset)
        if channel is None:
            return
        channel.subscribers.discard(subscriber)
        if not channel.subscribers:
            del self.channels[channel.dataset]
            if channel.pump is not None:
                channel.pump.cancel()
            if not self.channels:
                COMMITS.forget(self._notice)
                self._loop = None

    async def close(self) -> None:
        """Stop every channel (the app is shutting down)."""
        pumps = [c.pump for c in self.channels.values() if c.pump is not None]
        for pump in pumps:
            pump.cancel()
        for pump in pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        self.channels.clear()
        COMMITS.forget(self._notice)

    def _listen(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            COMMITS.listen(self._notice)

    def _notice(self, dataset: str, number: int) -> None:
        """A commit notice, called in the committing thread: hand it to the loop, never wait."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wake, dataset)

    def _wake(self, dataset: str) -> None:
        channel = self.channels.get(dataset)
        if channel is not None:
            channel.wake.set()

    async def _pump(self, channel: Channel) -> None:
        """Tell the channel's clients about each newer version, woken by a notice or after ``poll_s``."""
        while channel.subscribers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(channel.wake.wait(), self.poll_s)
            channel.wake.clear()
            try:
                newest = await self.newest(channel.dataset)
            except Exception:  # noqa: BLE001 - the database away for a moment: the next look tries again
                log.warning("live values: the current version of %s could not be read", channel.dataset, exc_info=True)
                continue
            if newest <= channel.newest:
                continue
            channel.newest = newest
            for subscriber in list(channel.subscribers):
                try:
                    subscriber.queue.put_nowait(newest)
                except asyncio.QueueFull:
                    subscriber.dropped = True
                    channel.subscribers.discard(subscriber)
