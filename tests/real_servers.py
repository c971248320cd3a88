"""Real servers on loopback for the tests: a Matrix homeserver (Synapse) and a Bluesky PDS,
started from the verified scripts in ../shared/servers/. Each helper skips its test where the
install is missing, unless the COMMCAL_REQUIRE_* variable that .ci/run sets makes it mandatory
(then it installs and starts the server, minutes the first time)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The project's own start script (tests/servers/synapse.sh, written from ../shared/servers/
# synapse.sh with every rate limit a test run meets raised), or COMMCAL_SYNAPSE_SCRIPT.
SYNAPSE_SCRIPT = Path(
    os.environ.get("COMMCAL_SYNAPSE_SCRIPT")
    or Path(__file__).resolve().parent / "servers" / "synapse.sh"
)
# Where that script keeps the homeserver's config (hs.yaml: for registering more users).
SYNAPSE_DIR = Path(os.environ.get("TMPDIR") or "/tmp") / "commcal-servers" / "synapse-tests"


def real_synapse() -> tuple[str, str, str]:
    """(homeserver, access token, room id) from synapse.sh: each call is a new login, so a new
    device (and a new room). Skipped where matrix-synapse is not installed, unless
    COMMCAL_REQUIRE_SYNAPSE=1, which installs and starts it (minutes, the first time)."""
    import importlib.util

    required = os.environ.get("COMMCAL_REQUIRE_SYNAPSE") == "1"
    venv = Path(os.environ.get("TMPDIR") or "/tmp") / "commcal-servers" / "synapse-venv"
    installed = (venv / "bin" / "python").exists() or importlib.util.find_spec("synapse")
    if not SYNAPSE_SCRIPT.is_file() or not (installed or required):
        if required:
            pytest.fail(f"COMMCAL_REQUIRE_SYNAPSE=1 but {SYNAPSE_SCRIPT} is missing")
        pytest.skip(
            f"matrix-synapse is not installed or {SYNAPSE_SCRIPT} is missing "
            "(COMMCAL_REQUIRE_SYNAPSE=1 makes this test install and start it)"
        )
    done = subprocess.run(
        ["bash", str(SYNAPSE_SCRIPT)], capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, done.stderr[-2000:]
    homeserver, token, room = done.stdout.strip().splitlines()[-1].split()
    return homeserver, token, room


def matrix_member(homeserver: str, room: str, inviter_token: str) -> tuple[str, str]:
    """A new user on the real homeserver, invited to `room` by `inviter_token`'s user and joined:
    (user id, access token). For what members do to a post: reactions, replies in its thread."""
    import secrets

    import requests

    name = f"member{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    venv = SYNAPSE_DIR.parent / "synapse-venv"
    register = [str(venv / "bin" / "register_new_matrix_user"), "-c", str(SYNAPSE_DIR / "hs.yaml")]
    subprocess.run(
        [*register, "-u", name, "-p", password, "--no-admin", homeserver],
        check=True,
        capture_output=True,
        timeout=60,
    )
    login = requests.post(
        f"{homeserver}/_matrix/client/v3/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": name},
            "password": password,
        },
        timeout=30,
    )
    login.raise_for_status()
    user, token = login.json()["user_id"], login.json()["access_token"]
    client = f"{homeserver}/_matrix/client/v3/rooms/{room}"
    requests.post(
        f"{client}/invite",
        headers={"Authorization": f"Bearer {inviter_token}"},
        json={"user_id": user},
        timeout=30,
    ).raise_for_status()
    requests.post(
        f"{client}/join", headers={"Authorization": f"Bearer {token}"}, json={}, timeout=30
    ).raise_for_status()
    return user, token


# ../shared/servers/bsky_pds.sh beside the checkout, or COMMCAL_BSKY_PDS_SCRIPT.
PDS_SCRIPT = Path(
    os.environ.get("COMMCAL_BSKY_PDS_SCRIPT")
    or Path(__file__).resolve().parents[2] / "shared" / "servers" / "bsky_pds.sh"
)
_SERVERS = Path(os.environ.get("TMPDIR") or "/tmp") / "commcal-servers"


@dataclass(frozen=True)
class PdsAccount:
    """A fresh account on the real PDS: `service` is its URL, `did` the account's DID."""

    service: str
    handle: str
    password: str
    did: str
    access_jwt: str

    def xrpc(self, method: str, **params: Any) -> dict[str, Any]:
        """A GET query of the PDS's own API as this account (listRecords, getRecord ...)."""
        import requests

        answer = requests.get(
            f"{self.service}/xrpc/{method}",
            params=params,
            headers={"Authorization": f"Bearer {self.access_jwt}"},
            timeout=30,
        )
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def posts(self) -> list[dict[str, Any]]:
        """Every app.bsky.feed.post record in the account's repository, oldest first."""
        records: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"repo": self.did, "collection": "app.bsky.feed.post"}
            params.update({"limit": 100, "reverse": "true"})
            if cursor:
                params["cursor"] = cursor
            page = self.xrpc("com.atproto.repo.listRecords", **params)
            records.extend(page.get("records", []))
            cursor = page.get("cursor")
            if not cursor or not page.get("records"):
                return records

    def blob(self, cid: str) -> bytes:
        """The bytes of an uploaded blob, from the PDS (com.atproto.sync.getBlob)."""
        import requests

        answer = requests.get(
            f"{self.service}/xrpc/com.atproto.sync.getBlob",
            params={"did": self.did, "cid": cid},
            timeout=30,
        )
        answer.raise_for_status()
        return answer.content


def _require_bsky_install() -> None:
    """Skip where @atproto/dev-env is not installed, unless COMMCAL_REQUIRE_BSKY=1."""
    required = os.environ.get("COMMCAL_REQUIRE_BSKY") == "1"
    installed = (_SERVERS / "atp" / "node_modules" / "@atproto" / "dev-env").is_dir()
    if not PDS_SCRIPT.is_file() or not (installed or required):
        if required:
            pytest.fail(f"COMMCAL_REQUIRE_BSKY=1 but {PDS_SCRIPT} is missing")
        pytest.skip(
            f"the Bluesky PDS (@atproto/dev-env) is not installed or {PDS_SCRIPT} is missing "
            "(COMMCAL_REQUIRE_BSKY=1 makes this test install and start it)"
        )


def _pds_url() -> str:
    """The running PDS's URL from bsky_pds.sh (which reuses a healthy instance and else installs
    and starts one)."""
    _require_bsky_install()
    done = subprocess.run(["bash", str(PDS_SCRIPT)], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1].split()[0]


def real_pds() -> PdsAccount:
    """A new account on a real Bluesky PDS (@atproto/pds through @atproto/dev-env, started by
    ../shared/servers/bsky_pds.sh): each call makes its own account, so tests never see each
    other's posts, and the server is never restarted (its start wipes every account)."""
    return _new_account(_pds_url())


def _new_account(service: str) -> PdsAccount:
    import secrets

    import requests

    handle = f"t{secrets.token_hex(5)}.test"
    password = secrets.token_urlsafe(12)
    answer = requests.post(
        f"{service}/xrpc/com.atproto.server.createAccount",
        json={"handle": handle, "email": f"{handle}@example.com", "password": password},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text[:500]
    body = answer.json()
    return PdsAccount(service, handle, password, body["did"], body["accessJwt"])


NETWORK_SCRIPT = Path(__file__).resolve().parent / "servers" / "bsky_network.sh"


@dataclass(frozen=True)
class BskyNetwork:
    """A real Bluesky network (PLC, PDS and AppView, tests/servers/bsky_network.sh): `appview`
    answers app.bsky.feed.getPostThread with the counts and replies it has indexed."""

    pds: str
    appview: str
    control: str

    def account(self) -> PdsAccount:
        """A new account on the network's PDS."""
        return _new_account(self.pds)

    def settle(self) -> None:
        """Wait until the AppView has indexed everything written to the PDS so far."""
        import requests

        requests.post(f"{self.control}/process", timeout=120).raise_for_status()

    def create(self, who: PdsAccount, collection: str, record: dict[str, Any]) -> dict[str, str]:
        """Write a record as `who` (a like, a repost, a reply ...); its uri and cid."""
        from datetime import UTC, datetime

        import requests

        record = {"createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"), **record}
        answer = requests.post(
            f"{self.pds}/xrpc/com.atproto.repo.createRecord",
            headers={"Authorization": f"Bearer {who.access_jwt}"},
            json={"repo": who.did, "collection": collection, "record": record},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text[:500]
        created: dict[str, str] = answer.json()
        return created


def real_bsky_network() -> BskyNetwork:
    """The running Bluesky network with an AppView (PostgreSQL and Redis on this machine), started
    when missing. Skipped like `real_pds` where @atproto/dev-env is not installed."""
    _require_bsky_install()
    done = subprocess.run(
        ["bash", str(NETWORK_SCRIPT)], capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    urls = json.loads(done.stdout.strip().splitlines()[-1])
    return BskyNetwork(urls["pds"], urls["appview"], urls["control"])
