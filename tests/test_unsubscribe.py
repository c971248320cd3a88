"""Unsubscribe tokens, List-Unsubscribe headers, and the web app through a real waitress server."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from commcal.tokens import list_unsubscribe_headers, open_token, sign, unsubscribe_url, verify
from commcal.unsubscribe_server import UnsubscribeServer, make_app

SECRET = "s3cret-from-the-environment"


def _flip(text: str, index: int) -> str:
    """`text` with one base64url character replaced by a different one."""
    char = text[index]
    return text[:index] + ("A" if char != "A" else "B") + text[index + 1 :]


# Tokens


def test_round_trip() -> None:
    token = sign("sub-42", SECRET)
    assert verify(token, SECRET) == "sub-42"


def test_round_trip_with_list_id_and_non_ascii_key() -> None:
    token = sign("συνδρομητής-7", SECRET, list_id="news.example.org")
    assert verify(token, SECRET) == "συνδρομητής-7"
    assert open_token(token, SECRET) == ("συνδρομητής-7", "news.example.org")


def test_token_is_url_safe_and_mac_is_128_bits() -> None:
    token = sign("sub-42", SECRET)
    _key_part, mac_part = token.split(".")
    assert all(c.isalnum() or c in "-_." for c in token)
    assert len(mac_part) == 22  # 16 bytes, base64url without padding


@pytest.mark.parametrize("index", range(len(sign("sub-42", SECRET))))
def test_every_single_character_change_fails(index: int) -> None:
    token = sign("sub-42", SECRET)
    if token[index] == ".":
        return
    assert verify(_flip(token, index), SECRET) is None


def test_other_key_with_original_mac_fails() -> None:
    token = sign("sub-42", SECRET)
    other = sign("sub-43", SECRET)
    assert verify(other.split(".")[0] + "." + token.split(".")[1], SECRET) is None


def test_list_id_is_signed() -> None:
    token = sign("sub-42", SECRET, list_id="a")
    forged_payload = sign("sub-42", SECRET, list_id="b").split(".")[0]
    assert verify(forged_payload + "." + token.split(".")[1], SECRET) is None


def test_wrong_secret_fails() -> None:
    assert verify(sign("sub-42", SECRET), "another-secret") is None


@pytest.mark.parametrize("cut", [1, 5, 10, 21])
def test_truncated_token_fails(cut: int) -> None:
    token = sign("sub-42", SECRET)
    assert verify(token[:-cut], SECRET) is None


@pytest.mark.parametrize("token", ["", ".", "abc", "abc.", ".abc", "a.b.c", "====.====", "é.é"])
def test_malformed_tokens_fail(token: str) -> None:
    assert verify(token, SECRET) is None


def test_empty_secret_never_verifies() -> None:
    assert verify(sign("sub-42", SECRET), "") is None


def test_address_as_key_is_refused() -> None:
    with pytest.raises(ValueError, match="email address"):
        sign("maria@example.org", SECRET)


@given(st.text(max_size=200))
def test_random_strings_never_verify_and_never_raise(text: str) -> None:
    assert verify(text, SECRET) is None


@given(st.from_regex(r"[A-Za-z0-9_-]{1,40}\.[A-Za-z0-9_-]{22}", fullmatch=True))
def test_random_well_formed_tokens_never_verify(text: str) -> None:
    assert verify(text, SECRET) is None


# URL and headers


def test_unsubscribe_url() -> None:
    assert unsubscribe_url("https://news.example.org/", "abc.def") == (
        "https://news.example.org/u/abc.def"
    )


def test_headers_exact() -> None:
    headers = list_unsubscribe_headers(
        "https://news.example.org/u/abc.def", "unsubscribe@example.org"
    )
    assert headers == {
        "List-Unsubscribe": (
            "<https://news.example.org/u/abc.def>, "
            "<mailto:unsubscribe@example.org?subject=unsubscribe>"
        ),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def test_headers_without_mailto_and_with_mailto_prefix() -> None:
    url = "https://news.example.org/u/abc.def"
    assert list_unsubscribe_headers(url, None)["List-Unsubscribe"] == f"<{url}>"
    assert list_unsubscribe_headers(url, "mailto:u@example.org")["List-Unsubscribe"] == (
        f"<{url}>, <mailto:u@example.org?subject=unsubscribe>"
    )


@pytest.mark.parametrize(
    ("url", "mailto"),
    [
        ("http://news.example.org/u/x", None),
        ("https://news.example.org/u/x\r\nBcc: a@b", None),
        ("https://news.example.org/u/x", "a@b>, <https://evil"),
    ],
)
def test_headers_refuse_plain_http_and_injection(url: str, mailto: str | None) -> None:
    with pytest.raises(ValueError):
        list_unsubscribe_headers(url, mailto)


# The web app, through waitress on loopback


class Server:
    def __init__(self, base: str, calls: list[str]) -> None:
        self.base = base
        self.calls = calls

    def url(self, token: str, query: str = "") -> str:
        return unsubscribe_url(self.base, token) + query


@pytest.fixture
def server() -> Iterator[Server]:
    calls: list[str] = []

    def suppress(key: str) -> bool:
        calls.append(key)
        return True

    app = make_app(SECRET, suppress, brand="Athens <Open> Data")
    wsgi = UnsubscribeServer(app, "127.0.0.1", 0)
    [(host, port)] = wsgi.addresses
    thread = threading.Thread(target=wsgi.run, daemon=True)
    thread.start()
    try:
        yield Server(f"http://{host}:{port}", calls)
    finally:
        wsgi.stop()
        thread.join(timeout=5)
        assert not thread.is_alive()


ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _assert_page_headers(response: requests.Response) -> None:
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_get_shows_a_form_and_changes_nothing(server: Server) -> None:
    response = requests.get(server.url(sign("sub-42", SECRET)), timeout=5)
    assert response.status_code == 200
    _assert_page_headers(response)
    assert '<form method="post">' in response.text
    assert 'name="List-Unsubscribe" value="One-Click"' in response.text
    assert "Athens &lt;Open&gt; Data" in response.text  # brand escaped
    assert "<Open>" not in response.text
    assert server.calls == []


def test_one_click_post_suppresses_once(server: Server) -> None:
    response = requests.post(
        server.url(sign("sub-42", SECRET)), data=ONE_CLICK, timeout=5, allow_redirects=False
    )
    assert response.status_code == 200
    _assert_page_headers(response)
    assert "You are unsubscribed" in response.text
    assert server.calls == ["sub-42"]


def test_multipart_one_click_post_also_works(server: Server) -> None:
    # RFC 8058 §3.2: clients SHOULD send multipart/form-data.
    response = requests.post(
        server.url(sign("sub-7", SECRET)),
        files={"List-Unsubscribe": (None, "One-Click")},
        timeout=5,
    )
    assert response.status_code == 200
    assert server.calls == ["sub-7"]


def test_tampered_token_is_400_and_no_call(server: Server) -> None:
    token = _flip(sign("sub-42", SECRET), 2)
    for response in (
        requests.get(server.url(token), timeout=5),
        requests.post(server.url(token), data=ONE_CLICK, timeout=5),
    ):
        assert response.status_code == 400
        _assert_page_headers(response)
        assert "This link does not work" in response.text
    assert server.calls == []


def test_other_paths_404_and_other_methods_405(server: Server) -> None:
    token = sign("sub-42", SECRET)
    assert requests.get(server.base + "/", timeout=5).status_code == 404
    assert requests.get(server.base + f"/u/{token}/x", timeout=5).status_code == 404
    assert requests.post(server.base + f"/x/{token}", data=ONE_CLICK, timeout=5).status_code == 404
    response = requests.delete(server.url(token), timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD, POST"
    assert server.calls == []


def test_greek_page(server: Server) -> None:
    token = sign("sub-42", SECRET)
    response = requests.get(server.url(token, "?lang=el"), timeout=5)
    assert '<html lang="el">' in response.text
    assert "Διαγραφή" in response.text
    response = requests.post(server.url(token, "?lang=el"), data=ONE_CLICK, timeout=5)
    assert "Η διαγραφή σας ολοκληρώθηκε" in response.text
    assert server.calls == ["sub-42"]


def test_unknown_language_falls_back_to_english(server: Server) -> None:
    response = requests.get(server.url(sign("sub-42", SECRET), "?lang=<x>"), timeout=5)
    assert '<html lang="en">' in response.text


def test_failing_suppress_is_500_without_claiming_success() -> None:
    def suppress(key: str) -> bool:
        raise RuntimeError("database down")

    app = make_app(SECRET, suppress)
    wsgi = UnsubscribeServer(app, "127.0.0.1", 0)
    [(host, port)] = wsgi.addresses
    thread = threading.Thread(target=wsgi.run, daemon=True)
    thread.start()
    try:
        url = unsubscribe_url(f"http://{host}:{port}", sign("sub-1", SECRET))
        response = requests.post(url, data=ONE_CLICK, timeout=5)
        assert response.status_code == 500
        assert "You are unsubscribed" not in response.text
    finally:
        wsgi.stop()
        thread.join(timeout=5)
        assert not thread.is_alive()
