"""An ordered, retrying write queue drained by one background thread.

Every write goes into an in-memory queue. A write that fails because the store is unreachable
(an *outage*) stays at the head of the queue and is retried with exponential backoff, so nothing
is lost and the order of writes is kept; the caller never waits on, or dies of, the store. Errors
that may pass (*transient*) are retried a few times; *permanent* ones are dropped and reported
in :attr:`WriteQueue.errors`. The queue knows nothing of what the writes mean: it hands batches
to an ``apply`` function and asks a ``classify`` function what an error is.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Write", "WriteQueue"]

_log = logging.getLogger(__name__)

# A writer thread with nothing to do for this long ends; the next write starts another.
_IDLE_EXIT_S = 30.0

# Errors that are not outages but may pass (e.g. an HTTP 500): retried a few times only, so a
# request the store can never accept does not block the queue forever.
_MAX_TRANSIENT_ATTEMPTS = 5


@dataclass
class Write:
    """One queued write: its ``kind``, the ``key`` it is about, and what to write.

    ``weight`` is its size for coalescing (see :class:`WriteQueue`); ``result`` is what ``apply``
    left on it, ``done`` is set once it was applied or given up on.
    """

    kind: str
    key: str | None
    payload: dict[str, Any] = field(default_factory=dict)
    weight: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    result: str = ""
    attempts: int = 0


class WriteQueue:
    """Writes applied in order by one daemon thread, retried through outages.

    Args:
        apply: applies a batch of writes (all of the head's kind); raises on failure. It may
            change a write's payload to record what was already sent, so a retry resends less.
        classify: an exception -> ``"outage"``, ``"transient"`` or ``"permanent"``.
        target: the store's name in log messages.
        coalesce_kind: consecutive writes of this kind are applied together, up to
            ``max_weight`` in total weight.
        max_weight: the largest total weight of a coalesced batch.
        retry_initial_s: first backoff after a failed write; doubles up to ``retry_max_s``.
        retry_max_s: the longest wait between two attempts during an outage.
        flush_at_exit_s: how long the interpreter waits at exit for queued writes.
    """

    def __init__(self, apply: Callable[[list[Write]], None], classify: Callable[[BaseException], str],
                 *, target: str, coalesce_kind: str | None = None, max_weight: int = 0,
                 retry_initial_s: float = 0.5, retry_max_s: float = 10.0,
                 flush_at_exit_s: float = 60.0) -> None:
        self._apply = apply
        self._classify = classify
        self.target = target
        self.coalesce_kind = coalesce_kind
        self.max_weight = max_weight
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.flush_at_exit_s = flush_at_exit_s
        self._lock = threading.Condition(threading.RLock())
        self._queue: deque[Write] = deque()
        self._busy = False          # the thread holds writes taken from the queue
        self._healthy = True        # False while the store is unreachable
        self._closed = False
        self._thread: threading.Thread | None = None
        self.stats = {"retries": 0, "dropped": 0, "queued": 0}
        self.errors: list[str] = []  # writes given up on, for the report
        ref = weakref.ref(self)
        atexit.register(lambda: (queue := ref()) is not None and queue._at_exit())

    @property
    def healthy(self) -> bool:
        """False while the last attempt failed (the store is unreachable)."""
        with self._lock:
            return self._healthy

    def submit(self, write: Write) -> Write:
        """Queue ``write`` (after close, this reopens the queue)."""
        with self._lock:
            self._closed = False
            self._queue.append(write)
            self.stats["queued"] += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._drain, name="segcore-mlflow-writer",
                                                daemon=True)
                self._thread.start()
            self._lock.notify_all()
        return write

    def submit_and_wait(self, write: Write, timeout: float) -> str:
        """Queue ``write`` and wait up to ``timeout`` s for its result; "" at once during an outage."""
        self.submit(write)
        deadline = time.monotonic() + timeout
        while not write.done.is_set():
            if not self.healthy or time.monotonic() >= deadline:
                break
            write.done.wait(0.05)
        return write.result

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued write was applied (or given up on).

        Returns:
            True when the queue is empty, False when ``timeout`` (seconds) passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._queue or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._lock.wait(remaining if remaining is not None else 1.0)
        return True

    def pending(self) -> int:
        """Number of writes not yet applied."""
        with self._lock:
            return len(self._queue) + (1 if self._busy else 0)

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the background thread. Returns False if writes are still pending."""
        flushed = self.flush(timeout)
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)
        return flushed

    def note_error(self, message: str) -> None:
        """Report a write that was given up on (also used by callers for bad input)."""
        self.errors.append(message)
        self.stats["dropped"] += 1
        _log.warning("segcore tracking: %s", message)

    def _at_exit(self) -> None:
        if self.pending() and not self.flush(self.flush_at_exit_s):
            _log.warning("segcore tracking: %d MLflow writes to %s could not be sent before exit",
                         self.pending(), self.target)

    def _next_batch(self) -> list[Write] | None:
        """Wait for writes and take the next batch; None when the thread should end (closed, or
        idle so long that a reused Ray worker does not keep one thread per finished trial)."""
        with self._lock:
            idle_since = time.monotonic()
            while not self._queue and not self._closed:
                if time.monotonic() - idle_since > _IDLE_EXIT_S:
                    break
                self._lock.wait(_IDLE_EXIT_S)
            if not self._queue:
                self._thread = None  # the next write starts a new thread
                return None
            batch = self._take_batch()
            self._busy = True
            return batch

    def _take_batch(self) -> list[Write]:
        """The head write, or the run of coalescible writes at the head (called with the lock)."""
        first = self._queue.popleft()
        batch = [first]
        if first.kind == self.coalesce_kind:
            weight = first.weight
            while (self._queue and self._queue[0].kind == first.kind
                   and weight + self._queue[0].weight <= self.max_weight):
                write = self._queue.popleft()
                weight += write.weight
                batch.append(write)
        return batch

    def _drain(self) -> None:
        delay = self.retry_initial_s
        while (batch := self._next_batch()) is not None:
            try:
                self._apply(batch)
            except Exception as exc:  # noqa: BLE001 - classified, never escapes the thread
                delay = self._failed(batch, exc, delay)
                continue
            delay = self.retry_initial_s
            with self._lock:
                self._busy = False
                self._healthy = True
                for write in batch:
                    write.done.set()
                self._lock.notify_all()

    def _failed(self, batch: list[Write], exc: Exception, delay: float) -> float:
        """Give the batch up, or put it back at the head and wait ``delay``; the next delay."""
        kind = self._classify(exc)
        head = batch[0]
        head.attempts += 1
        give_up = kind == "permanent" or (
            kind == "transient" and head.attempts >= _MAX_TRANSIENT_ATTEMPTS)
        with self._lock:
            self._busy = False
            if give_up:
                for write in batch:
                    write.done.set()
                self.note_error(f"{head.kind} write for {head.key or 'sweep'} dropped after "
                                f"{head.attempts} attempt(s): {exc}")
            else:
                self._healthy = False
                self.stats["retries"] += 1
                self._queue.extendleft(reversed(batch))  # back to the head, in order
                if head.attempts in (1, 10) or head.attempts % 50 == 0:
                    _log.warning("segcore tracking: %s unreachable (%s); retrying in %.1fs, %d "
                                 "writes queued", self.target, (str(exc).splitlines() or [''])[0][:200],
                                 delay, len(self._queue))
                self._lock.wait(delay)
                delay = min(delay * 2, self.retry_max_s)
            self._lock.notify_all()
        return delay
