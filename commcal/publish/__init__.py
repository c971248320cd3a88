"""Publishing: the run that claims, sends and records each due delivery (`publisher`), what it
reports (`results`), the recorder thread of idempotent channels (`recorder`) and the retry
backoff (`retry`).

The names other modules use are importable from here: `from commcal.publish import publish`.
"""

from commcal.publish.publisher import (
    EXPIRY_LOOKBACK,
    MAX_INLINE_WAIT,
    Publisher,
    check_ledger,
    display_url,
    due_delivery,
    publish,
    remember_ledger,
    remembered_ledger,
    state_url,
    worker_name,
)
from commcal.publish.recorder import MAX_UNRECORDED, SentRecorder
from commcal.publish.results import BLOCKED, Outcome, Report

__all__ = [
    "BLOCKED",
    "EXPIRY_LOOKBACK",
    "MAX_INLINE_WAIT",
    "MAX_UNRECORDED",
    "Outcome",
    "Publisher",
    "Report",
    "SentRecorder",
    "check_ledger",
    "display_url",
    "due_delivery",
    "publish",
    "remember_ledger",
    "remembered_ledger",
    "state_url",
    "worker_name",
]
