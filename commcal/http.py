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
# The read timeout bounds each wait for bytes, not the whole answer: a server trickling a
# chunked body a byte at a time would hold a run for ever. An answer not read in full within
# this many seconds (from when its headers came) is a timeout like any other.
BODY_SECONDS = 60.0


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
        self.body_seconds = BODY_SECONDS

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        if kwargs.get("stream"):  # the caller reads the body itself, and bounds it
            return super().request(method, url, *args, **kwargs)
        kwargs["stream"] = True
        response = super().request(method, url, *args, **kwargs)
        self._read_body(response)
        return response

    def _read_body(self, response: requests.Response) -> None:
        """Read `response`'s body as requests does unless streaming, within `body_seconds`;
        past them, close it and raise ReadTimeout (the request itself was delivered)."""
        deadline = time.monotonic() + self.body_seconds
        chunks = []
        for chunk in response.iter_content(64 * 1024):
            chunks.append(chunk)
            if time.monotonic() > deadline:
                response.close()  # the connection: not back to the pool mid-answer
                raise requests.exceptions.ReadTimeout(
                    f"the answer did not end within {self.body_seconds:g} s", response=response
                )
        # As `Response.content` keeps it (the body read whole releases the connection).
        response._content = b"".join(chunks)

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


def new_session() -> requests.Session:
    return TimeoutSession()
