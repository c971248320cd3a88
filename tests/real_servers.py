"""Real servers on loopback for the tests: a Matrix homeserver (Synapse) today, started from the
verified scripts in ../shared/servers/. Each helper skips its test where the install is missing,
unless the COMMCAL_REQUIRE_* variable that .ci/run sets makes it mandatory (then it installs and
starts the server, minutes the first time)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

# ../shared/servers/synapse.sh beside the checkout (as CI lays it out), or COMMCAL_SYNAPSE_SCRIPT.
SYNAPSE_SCRIPT = Path(
    os.environ.get("COMMCAL_SYNAPSE_SCRIPT")
    or Path(__file__).resolve().parents[2] / "shared" / "servers" / "synapse.sh"
)


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
