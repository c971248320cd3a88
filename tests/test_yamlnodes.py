"""calendar/yamlnodes.py: what counts against the alias-bomb limit (only what aliases add)."""

from __future__ import annotations

from commcal.calendar.yamlnodes import MAX_ALIAS_VALUES, parse


def test_a_long_plain_calendar_is_no_alias_bomb() -> None:
    # 50,000 items written out are about 350,000 values: more than the alias limit, and all
    # of them written by hand (or a script); none added by an alias.
    text = "items:\n" + "".join(
        f"  - {{id: tip-{n}, kind: post, at: 2026-12-10 09:00}}\n" for n in range(50_000)
    )
    node, problems = parse(text, "calendars/big.yaml")
    assert problems == []
    assert node is not None
    items = node.get("items")
    assert items is not None and len(items.items) == 50_000
    assert items.items[-1].pos.line == 50_001


def test_aliases_that_add_too_much_are_refused_at_their_line() -> None:
    # Each level repeats the one before ten times: l5 is 211,111 values, nearly all by alias.
    levels = "".join(f"l{i + 1}: &l{i + 1} [{', '.join([f'*l{i}'] * 10)}]\n" for i in range(6))
    node, problems = parse("l0: &l0 [lol]\n" + levels + "items: []\n", "calendars/c.yaml")
    assert node is None
    (problem,) = problems
    assert f"more than {MAX_ALIAS_VALUES:,} values" in problem.message
    assert "alias bomb" in problem.hint
    assert problem.pos.path == "calendars/c.yaml"
    assert problem.pos.line == 6  # l5, the first level past the limit


def test_a_few_aliases_in_a_long_file_are_fine() -> None:
    text = "defaults: &d {kind: post, at: 2026-12-10 09:00}\nitems:\n" + "".join(
        f"  - {{<<: *d, id: tip-{n}}}\n" for n in range(10_000)
    )
    node, problems = parse(text, "calendars/big.yaml")
    assert problems == []
    assert node is not None
