"""The plain part made from an HTML-only template keeps where its links go."""

from __future__ import annotations

import pytest

from commcal.render import html_to_text


@pytest.mark.parametrize(
    ("html", "text"),
    [
        (
            '<p>See <a href="https://x.org/a?b=1&amp;c=2">read <b>more</b></a>.</p>',
            "See read more (https://x.org/a?b=1&c=2).",
        ),
        # The words are the address: shown once.
        ('<a href="https://x.org/">https://x.org</a>', "https://x.org"),
        ('<a href="https://x.org/">x.org</a>', "x.org"),
        ('<a href="mailto:hi@x.org">hi@x.org</a>', "hi@x.org"),
        ("<a href='https://e.org/εκδήλωση'>Ελλάδα</a>", "Ελλάδα (https://e.org/εκδήλωση)"),
        ("<a href=https://e.org>e</a>", "e (https://e.org)"),
        # Only an image inside: the address stands for it.
        ('<a href="https://e.org"><img src="logo.png"></a>', "https://e.org"),
        # Nothing a reader could open: the words alone.
        ('<a href="#top">top</a>', "top"),
        ('<a href="javascript:alert(1)">click</a>', "click"),
        ('<a name="x">anchor</a>', "anchor"),
        (
            '<p>One <a href="https://a.org">a</a></p><p>Two <a href="https://b.org">b</a></p>',
            "One a (https://a.org)\nTwo b (https://b.org)",
        ),
    ],
)
def test_links_keep_their_address(html: str, text: str) -> None:
    assert html_to_text(html) == text
