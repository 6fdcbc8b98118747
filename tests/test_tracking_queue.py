"""The retrying write queue (segcore.tracking.queue), with a fake store: order, retries, drops,
coalescing. No MLflow here."""

from __future__ import annotations

import threading
import time

from segcore.tracking.queue import Write, WriteQueue


class _Store:
    """Applies batches; fails the first ``failures`` attempts with errors of ``kind``."""

    def __init__(self, failures: int = 0, kind: str = "outage", failing_key: str | None = None):
        self.failures = failures
        self.kind = kind
        self.failing_key = failing_key
        self.batches: list[list[str]] = []
        self.attempts = 0
        self.gate: threading.Event | None = None  # when set up, apply waits for it

    def apply(self, batch: list[Write]) -> None:
        if self.gate is not None:
            assert self.gate.wait(5)
        self.attempts += 1
        failing = self.failing_key is None or batch[0].key == self.failing_key
        if failing and self.failures > 0:
            self.failures -= 1
            raise RuntimeError(self.kind)
        self.batches.append([w.key for w in batch])
        batch[0].result = f"done-{batch[0].key}"

    @staticmethod
    def classify(exc: BaseException) -> str:
        return str(exc)


def _queue(store: _Store, **kwargs) -> WriteQueue:
    return WriteQueue(store.apply, store.classify, target="fake", coalesce_kind="metrics",
                      max_weight=10, retry_initial_s=0.001, retry_max_s=0.004, **kwargs)


def test_outage_keeps_every_write_in_order():
    store = _Store(failures=5, kind="outage")
    queue = _queue(store)
    for key in "abc":
        queue.submit(Write("op", key))
    assert queue.flush(10) and queue.pending() == 0
    assert store.batches == [["a"], ["b"], ["c"]]
    assert queue.stats == {"retries": 5, "dropped": 0, "queued": 3} and queue.errors == []
    assert queue.healthy
    queue.close()


def test_permanent_error_drops_one_write_and_goes_on():
    store = _Store(failures=1, kind="permanent", failing_key="b")
    queue = _queue(store)
    written = [queue.submit(Write("op", key)) for key in "abc"]
    assert queue.flush(10)
    assert store.batches == [["a"], ["c"]]
    assert len(queue.errors) == 1 and queue.errors[0].startswith("op write for b dropped after 1 attempt")
    assert all(w.done.is_set() for w in written) and written[1].result == ""
    queue.close()


def test_transient_error_is_retried_five_times_then_dropped():
    store = _Store(failures=100, kind="transient", failing_key="a")
    queue = _queue(store)
    queue.submit(Write("op", "a"))
    queue.submit(Write("op", "b"))
    assert queue.flush(10)
    assert store.attempts == 6 and store.batches == [["b"]]  # 5 for "a", 1 for "b"
    assert queue.stats["retries"] == 4 and queue.stats["dropped"] == 1
    queue.close()


def test_consecutive_writes_of_the_coalesced_kind_share_a_batch():
    store = _Store()
    queue = _queue(store)
    store.gate = gate = threading.Event()
    queue.submit(Write("block", "0", weight=0))  # applied alone; holds the thread at the gate
    for key, weight in (("m1", 4), ("m2", 4), ("m3", 4), ("m4", 1)):
        queue.submit(Write("metrics", key, weight=weight))
    queue.submit(Write("op", "x"))
    queue.submit(Write("metrics", "m5", weight=1))
    gate.set()
    assert queue.flush(10)
    assert store.batches == [["0"], ["m1", "m2"], ["m3", "m4"], ["x"], ["m5"]]
    queue.close()


def test_submit_and_wait_returns_the_result_or_nothing_during_an_outage():
    store = _Store()
    queue = _queue(store)
    assert queue.submit_and_wait(Write("op", "a"), timeout=10) == "done-a"
    store.failures = 10**6  # the store goes away
    start = time.monotonic()
    queue.submit(Write("op", "b"))
    while queue.healthy and time.monotonic() - start < 5:
        time.sleep(0.01)
    assert queue.submit_and_wait(Write("op", "c"), timeout=10) == ""
    assert time.monotonic() - start < 5 and queue.pending() == 2
    store.failures = 0  # back: the queued writes go through, in order
    assert queue.flush(10) and store.batches == [["a"], ["b"], ["c"]]
    assert queue.close(5)


def test_close_stops_the_thread_and_a_later_write_reopens():
    store = _Store()
    queue = _queue(store)
    queue.submit(Write("op", "a"))
    assert queue.close(5)
    assert queue._thread is None
    queue.submit(Write("op", "b"))
    assert queue.flush(5) and store.batches == [["a"], ["b"]]
    queue.close()
