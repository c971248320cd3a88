"""Winner draws: reproducible from seed and file, independent of file order, uniform."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import Counter
from pathlib import Path

import pytest

from commcal.contest import DrawError, draw
from commcal.errors import CommcalError

ENTRIES = """\
name,email,handle
Maria,maria@example.org,@maria
Juma,juma@example.co.ke,@juma
Eleni,eleni@example.gr,@eleni
Amani,amani@example.co.ke,@amani
Nikos,nikos@example.gr,@nikos
Wanjiru,wanjiru@example.co.ke,@wanjiru
"""


def _write(tmp_path: Path, text: str, name: str = "entries.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_same_seed_and_file_give_same_winners(tmp_path: Path) -> None:
    path = _write(tmp_path, ENTRIES)
    first = draw(path, 3, "seed-1")
    assert first == draw(path, 3, "seed-1")
    assert len(set(first.winners)) == 3
    assert set(first.winners) <= {line.split(",")[1] for line in ENTRIES.splitlines()[1:]}
    assert first.entries == 6
    assert first.duplicates_removed == 0
    assert first.column == "email"
    assert len(first.entries_sha256) == 64


def test_known_result_does_not_change_between_versions(tmp_path: Path) -> None:
    # A published draw must be redoable later: this pins the algorithm.
    result = draw(_write(tmp_path, ENTRIES), 2, "2025-06-01")
    assert result.entries_sha256 == (
        "591c1054a659a6b7d6d2efa38ae27d6d39aeb536a739e692505f4c32736f68bc"
    )
    assert result.winners == ("nikos@example.gr", "maria@example.org")


def _redo(identities: list[str], winners: int, seed: str) -> tuple[str, list[str]]:
    """The draw as the module docstring describes it, written out independently."""
    ordered = sorted(identities)
    digest = hashlib.sha256("".join(i + "\n" for i in ordered).encode()).hexdigest()
    key = hashlib.sha256((seed + digest).encode()).digest()
    stream = (
        int.from_bytes(hashlib.sha256(key + n.to_bytes(8, "big")).digest(), "big")
        for n in itertools.count()
    )
    for i in range(winners):
        bound = len(ordered) - i
        value = next(v for v in stream if v < (1 << 256) - (1 << 256) % bound)
        j = i + value % bound
        ordered[i], ordered[j] = ordered[j], ordered[i]
    return digest, ordered[:winners]


def test_documented_algorithm_reproduces_the_draw(tmp_path: Path) -> None:
    emails = [line.split(",")[1] for line in ENTRIES.splitlines()[1:]]
    for seed in ("a", "b", "2025-06-01", "Αθήνα"):
        result = draw(_write(tmp_path, ENTRIES), 4, seed)
        assert (result.entries_sha256, list(result.winners)) == _redo(emails, 4, seed)


def test_shuffled_file_gives_same_winners(tmp_path: Path) -> None:
    header, *rows = ENTRIES.splitlines()
    original = draw(_write(tmp_path, ENTRIES), 3, "seed-1")
    for attempt in range(5):
        random.Random(attempt).shuffle(rows)
        shuffled = _write(tmp_path, "\n".join([header, *rows]) + "\n", f"s{attempt}.csv")
        again = draw(shuffled, 3, "seed-1")
        assert again.winners == original.winners
        assert again.entries_sha256 == original.entries_sha256


def test_duplicates_removed_first_keeping_first_row(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        ENTRIES
        + "Maria again, MARIA@Example.org ,@m2\n"
        + "Juma again,Juma@Example.co.ke,@j2\n"
        + "Juma thrice,  juma@example.co.ke\t,@j3\n",
    )
    result = draw(path, 6, "seed-1")
    assert result.entries == 6
    assert result.duplicates_removed == 3
    # Everyone wins once; the display value is the first row's.
    assert sorted(result.winners) == sorted(line.split(",")[1] for line in ENTRIES.splitlines()[1:])
    # Duplicates do not change the draw: same result as the file without them.
    assert result.winners == draw(_write(tmp_path, ENTRIES, "clean.csv"), 6, "seed-1").winners


def test_unicode_variants_are_the_same_person(tmp_path: Path) -> None:
    # "Ελένη" composed and decomposed, upper and lower case: one entry.
    path = _write(tmp_path, "handle\nΕλένη\nΕΛΈΝΗ\nΕλε\u0301νη\nJuma\n")
    result = draw(path, 2, "s")
    assert result.entries == 2
    assert result.duplicates_removed == 2
    assert set(result.winners) == {"Ελένη", "Juma"}


def test_different_seeds_usually_differ(tmp_path: Path) -> None:
    path = _write(tmp_path, ENTRIES)
    results = {draw(path, 2, f"seed-{i}").winners for i in range(20)}
    assert len(results) > 10  # 30 ordered pairs possible


def test_column_choice(tmp_path: Path) -> None:
    path = _write(tmp_path, "Name;Handle\nMaria;@maria\nJuma;@juma\n")
    assert draw(path, 1, "s").column == "Handle"  # semicolon CSV, handle column, any case
    assert draw(path, 1, "s", column="name").column == "Name"
    first_column = _write(tmp_path, "ticket,prize\nA1,x\nB2,y\n", "tickets.csv")
    result = draw(first_column, 2, "s")
    assert result.column == "ticket"
    assert sorted(result.winners) == ["A1", "B2"]


def test_google_forms_export(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "\ufeffTimestamp,Email Address,Answer\n"
        "2025/06/01 10:00:00,maria@example.org,yes\n"
        "2025/06/01 10:05:00,maria@example.org,yes\n",
    )
    result = draw(path, 1, "s")
    assert result.column == "Email Address"
    assert result.winners == ("maria@example.org",)


def test_uniform_over_seeds(tmp_path: Path) -> None:
    path = _write(tmp_path, "email\n" + "".join(f"person{i}@example.org\n" for i in range(10)))
    draws = 3000
    counts = Counter(draw(path, 1, f"seed-{i}").winners[0] for i in range(draws))
    assert len(counts) == 10
    expected = draws / 10
    chi_square = sum((count - expected) ** 2 / expected for count in counts.values())
    # Chi-square, 9 degrees of freedom: P(X > 27.877) = 0.001.
    assert chi_square < 27.877, counts


def test_uniform_second_place(tmp_path: Path) -> None:
    # Without replacement, the second winner is also uniform over everyone.
    path = _write(tmp_path, "email\n" + "".join(f"p{i}@example.org\n" for i in range(5)))
    draws = 2000
    counts = Counter(draw(path, 2, f"s{i}").winners[1] for i in range(draws))
    expected = draws / 5
    chi_square = sum((count - expected) ** 2 / expected for count in counts.values())
    assert chi_square < 18.467, counts  # 4 degrees of freedom, p = 0.001


# Errors


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DrawError, match=r"nope\.csv: no such entries file"):
        draw(tmp_path / "nope.csv", 1, "s")


@pytest.mark.parametrize("text", ["", "\n\n", "email\n", "email\n,\n\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    with pytest.raises(DrawError, match=r"entries\.csv: (the file is empty|no entries)"):
        draw(_write(tmp_path, text), 1, "s")


def test_fewer_entries_than_winners(tmp_path: Path) -> None:
    path = _write(tmp_path, "email\na@example.org\nA@example.org\nb@example.org\n")
    with pytest.raises(DrawError, match=r"entries\.csv: 2 unique entries .* fewer than the 3"):
        draw(path, 3, "s")


def test_column_not_found(tmp_path: Path) -> None:
    with pytest.raises(DrawError, match=r"entries\.csv:1: no column 'phone'; the columns are"):
        draw(_write(tmp_path, ENTRIES), 1, "s", column="phone")


def test_blank_identity_names_the_row(tmp_path: Path) -> None:
    path = _write(tmp_path, "name,email\nMaria,maria@example.org\nJuma,\n")
    with pytest.raises(DrawError, match=r"entries\.csv:3: no value in column 'email'"):
        draw(path, 1, "s")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "entries.csv"
    path.write_bytes("email\nmaria@example.org\nΕλένη\n".encode("cp1253"))
    with pytest.raises(DrawError, match=r"entries\.csv:3: not UTF-8"):
        draw(path, 1, "s")


@pytest.mark.parametrize(("winners", "seed"), [(0, "s"), (1, "  ")])
def test_bad_arguments(tmp_path: Path, winners: int, seed: str) -> None:
    with pytest.raises(DrawError):
        draw(_write(tmp_path, ENTRIES), winners, seed)


def test_errors_are_commcal_errors() -> None:
    assert issubclass(DrawError, CommcalError)
