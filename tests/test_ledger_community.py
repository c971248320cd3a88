"""Audiences in the ledger: suppressions, single-use code pools, contest draws.

Run against both backends with the fixtures of tests/test_ledger.py (SQLite, and the real
PostgreSQL when reachable; see there).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_ledger import T0, ledger, ledger_url, postgres_db

from commcal.errors import LedgerError
from commcal.ledger import Draw, Ledger, Suppression, mask_address, open_ledger, recipient_key

__all__ = ["ledger", "ledger_url", "postgres_db"]  # fixtures, imported to be found by pytest


def key(n: int) -> str:
    return f"{n:016x}"


CODES = [f"CODE-{n:03d}" for n in range(40)]


# ---- suppressions -----------------------------------------------------------------------------


def test_suppress_is_idempotent_and_unsuppress_lifts_it(ledger: Ledger) -> None:
    k = key(1)
    assert not ledger.is_suppressed(k)
    assert ledger.suppress(k, source="unsubscribe-link", now=T0, note="m***@example.org")
    assert not ledger.suppress(k, source="cli", now=T0 + timedelta(minutes=1))
    assert ledger.is_suppressed(k)
    assert ledger.is_suppressed(k.upper())  # keys are case-insensitive hex
    assert ledger.suppressions() == [Suppression(k, "unsubscribe-link", "m***@example.org", T0)]
    assert ledger.unsuppress(k, now=T0 + timedelta(minutes=2))
    assert not ledger.unsuppress(k, now=T0 + timedelta(minutes=3))
    assert not ledger.is_suppressed(k)
    assert ledger.suppressions() == []
    assert ledger.suppress(k, source="import", now=T0 + timedelta(minutes=4))  # again, anew


def test_suppressed_checks_many_keys_in_chunks(ledger: Ledger) -> None:
    for n in range(0, 1200, 3):
        ledger.suppress(key(n), source="import", now=T0)
    keys = [key(n) for n in range(1200)]
    assert ledger.suppressed(keys) == {key(n) for n in range(0, 1200, 3)}
    assert ledger.suppressed(iter([key(1), key(3), key(3)])) == {key(3)}
    assert ledger.suppressed([]) == set()


def test_suppressions_list_newest_first_with_a_limit(ledger: Ledger) -> None:
    for n in range(5):
        ledger.suppress(key(n), source="cli", now=T0 + timedelta(minutes=n))
    listed = ledger.suppressions()
    assert [s.recipient_key for s in listed] == [key(n) for n in reversed(range(5))]
    assert [s.recipient_key for s in ledger.suppressions(limit=2)] == [key(4), key(3)]


def test_suppression_notes_never_hold_a_full_address(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="full address"):
        ledger.suppress(key(1), source="cli", now=T0, note="mary@example.org")
    assert not ledger.is_suppressed(key(1))
    assert mask_address("mary@example.org") == "m***@example.org"
    assert ledger.suppress(key(1), source="cli", now=T0, note=mask_address("mary@example.org"))


@pytest.mark.parametrize("bad", ["", "abc", "0123456789abcdefg", "mary@example.org", "z" * 16])
def test_recipient_keys_are_16_hex_digits(ledger: Ledger, bad: str) -> None:
    with pytest.raises(ValueError, match="16 hex digits"):
        ledger.suppress(bad, source="cli", now=T0)
    with pytest.raises(ValueError, match="16 hex digits"):
        recipient_key(bad)


# ---- single-use codes -------------------------------------------------------------------------


def test_assign_code_gives_each_member_one_code_for_good(ledger: Ledger) -> None:
    codes = ["A", "B", "C"]
    assert ledger.assign_code("spring", key(1), codes, now=T0) == "A"
    assert ledger.assign_code("spring", key(1), codes, now=T0) == "A"  # idempotent
    assert ledger.assign_code("spring", key(2), codes, now=T0) == "B"
    assert ledger.assign_code("spring", key(1), ["Z"], now=T0) == "A"  # even with other codes
    assert ledger.code_for("spring", key(2)) == "B"
    assert ledger.code_for("spring", key(9)) is None
    assert ledger.codes_assigned("spring") == 2
    # Pools are independent: the same code text and member may appear in another pool.
    assert ledger.assign_code("autumn", key(2), codes, now=T0) == "A"
    assert ledger.codes_assigned("autumn") == 1


def test_assign_code_skips_taken_codes_and_says_none_when_exhausted(ledger: Ledger) -> None:
    assert ledger.assign_code("p", key(1), ["A", "B"], now=T0) == "A"
    # The file was edited: A moved to the end, a duplicate crept in. A is still never reused.
    assert ledger.assign_code("p", key(2), ["B", "B", "A"], now=T0) == "B"
    assert ledger.assign_code("p", key(3), ["A", "B"], now=T0) is None
    assert ledger.assign_code("p", key(3), [], now=T0) is None
    assert ledger.assign_code("p", key(3), ["A", "B", "C"], now=T0) == "C"
    assert ledger.codes_assigned("p") == 3


def test_assignments_are_permanent(ledger: Ledger) -> None:
    ledger.assign_code("p", key(1), ["A"], now=T0)
    with pytest.raises(LedgerError, match="append-only"):
        ledger._transaction(  # type: ignore[attr-defined]
            lambda: ledger._execute("DELETE FROM code_assignments"),  # type: ignore[attr-defined]
            write=True,
        )
    assert ledger.code_for("p", key(1)) == "A"


def test_reserve_codes_is_all_or_nothing(ledger: Ledger) -> None:
    keys = [key(n) for n in range(41)]
    with pytest.raises(LedgerError, match=r"1 code short.*41 members.*only 40.*nothing"):
        ledger.reserve_codes("p", keys, CODES, now=T0)
    assert ledger.codes_assigned("p") == 0
    assert all(ledger.code_for("p", k) is None for k in keys)

    got = ledger.reserve_codes("p", keys[:40], CODES, now=T0)
    assert got == dict(zip(keys[:40], CODES, strict=True))
    assert ledger.codes_assigned("p") == 40


def test_reserve_codes_keeps_existing_codes_and_counts_only_new_needs(ledger: Ledger) -> None:
    assert ledger.assign_code("p", key(5), ["A", "B", "C"], now=T0) == "A"
    got = ledger.reserve_codes("p", [key(1), key(5), key(2), key(1)], ["A", "B", "C"], now=T0)
    assert got == {key(1): "B", key(5): "A", key(2): "C"}
    with pytest.raises(LedgerError, match=r"2 codes short"):
        ledger.reserve_codes("p", [key(1), key(7), key(8)], ["A", "B", "C"], now=T0)
    assert ledger.codes_assigned("p") == 3
    assert ledger.reserve_codes("p", [key(1), key(2)], [], now=T0) == {key(1): "B", key(2): "C"}


_ASSIGNER = """
import json, random, sys, time
from datetime import UTC, datetime
from commcal.ledger import open_ledger

url, worker, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
keys = [f"{n:016x}" for n in range(40)]
codes = [f"CODE-{n:03d}" for n in range(40)]
random.Random(worker).shuffle(keys)
ledger = open_ledger(url)
time.sleep(max(0.0, start_at - time.time()))
got = {k: ledger.assign_code("loyalty", k, codes, now=datetime.now(UTC)) for k in keys}
ledger.close()
print(json.dumps(got))
"""


def test_eight_processes_assigning_codes_never_share_or_reuse_one(ledger_url: str) -> None:
    open_ledger(ledger_url).close()  # migrated up front
    start_at = time.time() + 2.0  # past every interpreter's start-up, so they really overlap
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ASSIGNER, ledger_url, f"w{n}", str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    answers: list[dict[str, Any]] = [json.loads(out) for out, _ in outputs]
    keys = [key(n) for n in range(40)]
    with open_ledger(ledger_url) as ledger:
        final = {k: ledger.code_for("loyalty", k) for k in keys}
        assert ledger.codes_assigned("loyalty") == 40
        assert ledger.assign_code("loyalty", key(40), CODES, now=T0) is None  # the 41st
        assert ledger.codes_assigned("loyalty") == 40
    assert all(final[k] is not None for k in keys)
    assert sorted(str(c) for c in final.values()) == CODES  # 40 distinct codes, each once
    for got in answers:  # every process was told the one code each member holds
        assert got == final
    assert Counter(final.values()).most_common(1)[0][1] == 1


# ---- contest draws ----------------------------------------------------------------------------


def test_draws_are_recorded_and_listed_in_order(ledger: Ledger) -> None:
    ledger.record_draw(
        "contest-1", seed="s1", entries_sha256="a" * 64, entries=12, winners=["@ann"], now=T0
    )
    ledger.record_draw(
        "contest-2", seed="x", entries_sha256="c" * 64, entries=1, winners=[], now=T0
    )
    later = T0 + timedelta(hours=1)
    ledger.record_draw(
        "contest-1",
        seed="s2",
        entries_sha256="b" * 64,
        entries=13,
        winners=("Bob B.", "@cy"),
        now=later,
    )
    assert ledger.draws("contest-1") == [
        Draw("contest-1", T0, "s1", "a" * 64, 12, ("@ann",)),
        Draw("contest-1", later, "s2", "b" * 64, 13, ("Bob B.", "@cy")),
    ]
    assert ledger.draws("contest-2") == [Draw("contest-2", T0, "x", "c" * 64, 1, ())]
    assert ledger.draws("nothing") == []
    with pytest.raises(LedgerError, match="append-only"):
        ledger._transaction(  # type: ignore[attr-defined]
            lambda: ledger._execute("UPDATE draws SET seed = 'forged'"),  # type: ignore[attr-defined]
            write=True,
        )


# ---- migrations -------------------------------------------------------------------------------


def _backend(url: str) -> Any:
    import importlib

    return importlib.import_module(
        "commcal.ledger.sqlite" if url.startswith("sqlite:///") else "commcal.ledger.postgres"
    )


def test_a_version_1_ledger_is_upgraded_and_keeps_its_deliveries(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_ledger import due

    backend = _backend(ledger_url)
    with monkeypatch.context() as m:
        m.setattr(backend, "MIGRATIONS", backend.MIGRATIONS[:1])
        with open_ledger(ledger_url) as old:
            assert old.schema_version() == 1  # type: ignore[attr-defined]
            old.record_skipped(due(), reason="before the upgrade", now=T0)
    with open_ledger(ledger_url) as new:
        assert new.schema_version() == len(backend.MIGRATIONS)  # type: ignore[attr-defined]
        assert new.get(due().id) is not None
        assert new.suppress(key(1), source="cli", now=T0)
        assert new.assign_code("p", key(1), ["A"], now=T0) == "A"
    with open_ledger(ledger_url) as again:  # opening once more changes nothing
        assert again.schema_version() == len(backend.MIGRATIONS)  # type: ignore[attr-defined]
        assert again.is_suppressed(key(1))
        assert again.code_for("p", key(1)) == "A"


def test_the_interface_is_exported() -> None:
    import commcal.ledger as pkg

    for name in ("Suppression", "Draw", "mask_address", "recipient_key"):
        assert name in pkg.__all__
    assert Path(pkg.__file__ or "").name == "__init__.py"
