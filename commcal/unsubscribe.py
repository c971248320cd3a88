"""Old home of the unsubscribe tokens and their web app, kept so that imports keep working.

Tokens, links and headers live in `commcal.tokens`; the web app and its server in
`commcal.unsubscribe_server`. Import from those.
"""

from __future__ import annotations

from commcal.tokens import (
    SURVEY,
    UNSUBSCRIBE,
    list_unsubscribe_headers,
    open_token,
    sign,
    token_list,
    token_purpose,
    unsubscribe_url,
    unsubscribe_url_problem,
    verify,
)
from commcal.unsubscribe_server import ServerError, UnsubscribeServer, make_app, serve

__all__ = [
    "SURVEY",
    "UNSUBSCRIBE",
    "ServerError",
    "UnsubscribeServer",
    "list_unsubscribe_headers",
    "make_app",
    "open_token",
    "serve",
    "sign",
    "token_list",
    "token_purpose",
    "unsubscribe_url",
    "unsubscribe_url_problem",
    "verify",
]
