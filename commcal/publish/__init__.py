"""Publishing: the run that claims, sends and records each due delivery.

- `publisher`: the run itself (`publish()`, `Publisher`), and the ledger checks at its start;
- `results`: what it reports: `OutcomeState`, `Outcome`, `Report` (what the views read);
- `people`: deliveries to members, before sending: suppressions, members.secret, code pools;
- `recorder`: the thread that records the sends of idempotent channels, several per commit;
- `retry`: how long a transient failure waits (equal jitter, capped);
- `rows`: a delivery as the ledger keys it.

The names other modules use are importable from here: `from commcal.publish import publish`.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from commcal.publish.publisher import (
        EXPIRY_LOOKBACK,
        MAX_INLINE_WAIT,
        Publisher,
        check_ledger,
        display_url,
        publish,
        remember_ledger,
        remembered_ledger,
        state_url,
        worker_name,
    )
    from commcal.publish.recorder import MAX_UNRECORDED, SentRecorder
    from commcal.publish.results import BLOCKED, Outcome, OutcomeState, Report
    from commcal.publish.rows import due_delivery

# Loaded when first used: `results` is all the views need, and the cron minute's shortcut shows
# a report without loading the publisher (which imports the project loader, YAML and the rest).
_HOME = {
    **dict.fromkeys(
        (
            "EXPIRY_LOOKBACK",
            "MAX_INLINE_WAIT",
            "Publisher",
            "check_ledger",
            "display_url",
            "publish",
            "remember_ledger",
            "remembered_ledger",
            "state_url",
            "worker_name",
        ),
        "publisher",
    ),
    "MAX_UNRECORDED": "recorder",
    "SentRecorder": "recorder",
    **dict.fromkeys(("BLOCKED", "Outcome", "OutcomeState", "Report"), "results"),
    "due_delivery": "rows",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = [
    "BLOCKED",
    "EXPIRY_LOOKBACK",
    "MAX_INLINE_WAIT",
    "MAX_UNRECORDED",
    "Outcome",
    "OutcomeState",
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
