"""The one HTTP session every adapter shares: a User-Agent, connection pooling, default timeouts."""

from __future__ import annotations

from typing import Any

import requests

from commcal import __version__

USER_AGENT = f"commcal/{__version__} (+https://github.com/commcal/commcal)"
# (connect, read) seconds: a slow network must not hold a cron run for minutes.
DEFAULT_TIMEOUT = (5.0, 30.0)


class TimeoutSession(requests.Session):
    """A Session whose requests time out unless the caller says otherwise."""

    def __init__(self, timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.timeout = timeout
        self.headers["User-Agent"] = USER_AGENT
        adapter = requests.adapters.HTTPAdapter(pool_connections=16, pool_maxsize=32)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def new_session() -> requests.Session:
    return TimeoutSession()
