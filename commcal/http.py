"""The one HTTP session every adapter shares: a User-Agent, connection pooling, default timeouts."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.sessions import merge_setting as _merge_setting
from requests.utils import get_environ_proxies

from commcal import __version__

if TYPE_CHECKING:
    from requests.sessions import _Settings

USER_AGENT = f"commcal/{__version__} (+https://github.com/commcal/commcal)"
# (connect, read) seconds: a slow network must not hold a cron run for minutes.
DEFAULT_TIMEOUT = (5.0, 30.0)
# A whole answer must arrive within this many read timeouts (2 minutes by default).
BODY_DEADLINE_READS = 4


# requests ships this helper without annotations.
merge_setting: Callable[..., Any] = _merge_setting


class TimeoutSession(requests.Session):
    """A Session whose requests time out unless the caller says otherwise.

    It also reads the proxy settings of the environment (`HTTPS_PROXY`, `NO_PROXY`, ...) once
    per scheme and host instead of on every request: requests walks the whole of `os.environ`
    for each call, which was a fifth of the sending thread's time when publishing 2,000
    webhook deliveries (bench/publish.py). The environment does not change during a run.
    """

    def __init__(self, timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.timeout = timeout
        self.headers["User-Agent"] = USER_AGENT
        adapter = requests.adapters.HTTPAdapter(pool_connections=16, pool_maxsize=32)
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        self._environ: dict[tuple[str, str, str | None], dict[str, str]] = {}
        # Seconds a whole answer may take, from its headers; None: BODY_DEADLINE_READS read
        # timeouts (a test sets a short one).
        self.body_seconds: float | None = None

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        if kwargs.get("stream"):
            return super().request(method, url, *args, **kwargs)
        # The read timeout bounds each wait for a byte, not the answer: a server that sends
        # one byte every 29 s would hold the run for ever. So the body is read here, within
        # a whole-answer deadline of BODY_DEADLINE_READS read timeouts.
        kwargs["stream"] = True
        response = super().request(method, url, *args, **kwargs)
        timeout = kwargs["timeout"]
        read = timeout[1] if isinstance(timeout, tuple) else timeout
        seconds = self.body_seconds
        if seconds is None and read is not None:
            seconds = BODY_DEADLINE_READS * read
        deadline = None if seconds is None else time.monotonic() + seconds
        chunks = []
        try:
            # read1: what has arrived (up to 64 KB), one wait at most; read() would wait
            # for the whole 64 KB, a byte at a time, past any deadline.
            while chunk := _read1(response):
                chunks.append(chunk)
                if deadline is not None and time.monotonic() > deadline:
                    raise requests.exceptions.ReadTimeout("the answer took too long to arrive")
        except BaseException:
            response.close()
            raise
        response._content = b"".join(chunks)
        response._content_consumed = True  # type: ignore[attr-defined]  # iter_content reuses it
        return response

    def merge_environment_settings(
        self,
        url: Any,
        proxies: Any,
        stream: Any,
        verify: Any,
        cert: Any,
    ) -> _Settings:
        if not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url if isinstance(url, str) else url.decode())
        no_proxy = proxies.get("no_proxy") if proxies is not None else None
        key = (parts.scheme, parts.netloc, no_proxy)
        env_proxies = self._environ.get(key)
        if env_proxies is None:
            env_proxies = self._environ[key] = dict(get_environ_proxies(url, no_proxy=no_proxy))
        proxies = dict(proxies or {})
        for name, value in env_proxies.items():
            proxies.setdefault(name, value)
        if verify is True or verify is None:
            verify = (
                os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or verify
            )
        # The rest is what requests' own method does after reading the environment.
        return {
            "proxies": merge_setting(proxies, self.proxies),
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }


def _read1(response: requests.Response) -> bytes:
    """The next part of the body, urllib3's failures raised as requests raises them from
    `iter_content` (so callers catch requests' exceptions only)."""
    from urllib3 import exceptions as raw

    try:
        return bytes(response.raw.read1(64 * 1024, decode_content=True))
    except raw.ReadTimeoutError as exc:
        raise requests.exceptions.ReadTimeout(exc) from None
    except raw.ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from None
    except raw.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from None
    except raw.SSLError as exc:
        raise requests.exceptions.SSLError(exc) from None


def new_session() -> requests.Session:
    return TimeoutSession()
