"""Group commit for opens and clicks: one writer thread, one transaction per batch of requests.

A transaction per pixel load makes SQLite's writers queue on its lock (and its busy handler sleeps), so
throughput collapses under concurrent load. Here every request hands its hit to a single writer thread
and awaits the result; the thread takes whatever has queued up (up to MAX_BATCH), looks the touches up in
one query, inserts the events in one statement and commits once, then answers every waiting request
(SQLite still starts the write with BEGIN IMMEDIATE: the engine's begin hook applies to Core too). A
request is answered only after its event is committed, so nothing acknowledged can be lost; the thread
starts on first use, exits when idle, and `close()` drains the queue on shutdown. After answering, the
thread refreshes the lead scores of the people behind the hits (at most once a second under load).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from outreach.engagement import Hit, record_hits
from outreach.lead_scores import refresh_for_touches

log = logging.getLogger("outreach.tracking")

MAX_BATCH = 500
LINGER_S = 0.002  # wait this long for company after the first hit: +2 ms latency, several times less CPU
IDLE_EXIT_S = 5.0  # an idle writer thread exits; the next hit starts a new one
RESCORE_EVERY_S = 1.0  # lead scores follow the hits within about a second (outreach.lead_scores)
RESCORE_CHUNK = 1000
RESCORE_BUSY_LIMIT = 50  # touches re-scored per second while hits keep coming (~30 ms of writer CPU)
Result = bool | str | None


@dataclass
class _Pending:
    hit: Hit
    future: asyncio.Future[Result]
    loop: asyncio.AbstractEventLoop


class EventRecorder:
    """Records hits for the tracking routes; `await record(hit)` returns record_hits' result for it."""

    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._dirty: set[int] = set()  # touches with hits whose lead scores are not refreshed yet
        self._dirty_now: datetime | None = None
        self._rescored_at = 0.0

    async def record(self, hit: Hit) -> Result:
        """The hit's result once its batch is committed; raises what the batch's transaction raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._submit(_Pending(hit, future, loop))
        return await future

    def _submit(self, item: _Pending) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the event recorder is closed")
            self._queue.put(item)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="outreach-event-recorder", daemon=True)
                self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Write everything already queued, then stop the thread (the service's shutdown)."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None and thread.is_alive():
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=RESCORE_EVERY_S if self._dirty else IDLE_EXIT_S)
            except queue.Empty:
                if self._dirty:
                    self._rescore(limit=None)  # idle: catch up on everything
                    continue
                with self._lock:
                    if self._queue.empty():  # nothing slipped in while we decided: exit
                        self._thread = None
                        return
                continue
            if first is None:
                self._rescore(limit=None)
                return
            batch, stop = self._gather(first)
            self._write(batch)
            if stop:
                self._rescore(limit=None)
            elif time.monotonic() - self._rescored_at >= RESCORE_EVERY_S:
                self._rescore(limit=RESCORE_BUSY_LIMIT)
            if stop:
                return

    def _gather(self, first: _Pending) -> tuple[list[_Pending], bool]:
        """The first hit plus what arrives within LINGER_S (bigger batches: less work per event)."""
        batch = [first]
        deadline = time.monotonic() + LINGER_S
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _write(self, batch: Sequence[_Pending]) -> None:
        try:
            with self._engine.begin() as connection:  # Core: a third less work than an ORM session here
                results = record_hits(connection, [item.hit for item in batch])
        except Exception as exc:  # every waiting request must hear about it, whatever it was
            log.exception("recording %d tracking events failed", len(batch))
            for item in batch:
                _deliver(item, error=exc)
            return
        for item, result in zip(batch, results, strict=True):
            _deliver(item, result=result)
            if result:
                self._dirty.add(item.hit.touch_id)
                self._dirty_now = max(self._dirty_now or item.hit.now, item.hit.now)

    def _rescore(self, limit: int | None) -> None:
        """Refresh the lead scores of the people behind the hits recorded since the last refresh.

        Runs after the requests were answered: under load at most every RESCORE_EVERY_S and for at most
        `limit` touches (the rest wait, so scoring never takes much of the writer from recording), all of
        them once the queue is idle, and before the thread exits. A person opening and clicking within the
        second is scored once. A failure loses no event (they are committed) and is logged; the worker's
        nightly refresh catches up.
        """
        pending, now = sorted(self._dirty), self._dirty_now
        touched, rest = (pending, []) if limit is None else (pending[:limit], pending[limit:])
        self._dirty, self._rescored_at = set(rest), time.monotonic()
        self._dirty_now = now if rest else None
        if not touched or now is None:
            return
        try:
            for start in range(0, len(touched), RESCORE_CHUNK):
                with self._engine.begin() as connection:
                    refresh_for_touches(connection, touched[start : start + RESCORE_CHUNK], now)
        except Exception:
            log.exception("refreshing lead scores after %d tracked touches failed", len(touched))


def _deliver(item: _Pending, *, result: Result = None, error: BaseException | None = None) -> None:
    def settle() -> None:
        if item.future.done():  # the request went away (client disconnected)
            return
        if error is not None:
            item.future.set_exception(error)
        else:
            item.future.set_result(result)

    try:
        item.loop.call_soon_threadsafe(settle)
    except RuntimeError:
        log.debug("a tracking request's event loop closed before its event was committed")
