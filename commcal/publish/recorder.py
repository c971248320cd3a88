"""Records the `sent` of an idempotent channel's sends in its own thread, several per commit."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from commcal.ledger import Ledger, Sent
from commcal.publish.results import Outcome, OutcomeState

# Sends of an idempotent channel that may be out but not yet recorded `sent`: what a crash makes
# the next run resend (with the same idempotency key) besides the one in flight; also the most
# one commit records. The recorder lets RECORD_GATHER seconds of sends queue up before each
# commit, rather than waking for each send (bench/README.md: "the recorder wakes once per
# commit").
MAX_UNRECORDED = 16
RECORD_GATHER = 0.005


class SentRecorder:
    """Records the sends of one channel in a thread of its own, many per transaction.

    `add` queues a send that went out, and waits while MAX_UNRECORDED are queued; the thread
    commits what is queued in one `record_sent_many` and then reports the outcomes. `close`
    waits for the last commit. A ledger error stops the recording; it is raised by the next
    `add` and by `close`, and the sends it did not record stay `sending` (resent with the same
    key by a later run).
    """

    def __init__(self, ledger: Ledger, report: Callable[[Outcome], None]) -> None:
        self._ledger = ledger
        self._report = report
        self._queue: queue.SimpleQueue[tuple[Sent, Outcome] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._room = threading.BoundedSemaphore(MAX_UNRECORDED)
        self._thread = threading.Thread(target=self._loop, name="commcal-record", daemon=True)
        self._thread.start()

    def add(self, sent: Sent, outcome: Outcome) -> None:
        # Usually there is room; waiting (with a timeout, to notice a recording error) is slower.
        while not self._room.acquire(blocking=False) and not self._room.acquire(timeout=0.1):
            if self._error is not None:
                raise self._error
        if self._error is not None:
            raise self._error
        self._queue.put((sent, outcome))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        try:
            self._record_until_closed()
        except BaseException as exc:  # handed to the sending thread, which raises it
            self._error = exc

    def _record_until_closed(self) -> None:
        done = False
        while not done:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            # Let the next few sends go out, then take everything queued: fewer, larger commits,
            # and one wake-up of this thread per commit rather than one per send (each wake-up
            # takes the interpreter lock from the sending thread).
            time.sleep(RECORD_GATHER)
            while len(batch) < MAX_UNRECORDED:
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
                if entry is None:
                    done = True
                    break
                batch.append(entry)
            results = self._ledger.record_sent_many([sent for sent, _ in batch])
            for (_, outcome), stale in zip(batch, results, strict=True):
                self._room.release()
                if stale is not None:
                    outcome = Outcome(outcome.delivery, OutcomeState.HELD, str(stale))
                self._report(outcome)
