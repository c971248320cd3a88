#!/usr/bin/env bash
# Start (or reuse) a real Matrix homeserver for commcal's tests: matrix-synapse from PyPI on
# SQLite, 127.0.0.1:${SYNAPSE_PORT:-8018}, written from ../shared/servers/synapse.sh with every
# rate limit a test run meets raised (messages, logins, room creation, joins, invites, media,
# registration, redactions): one test run creates hundreds of rooms and devices.
# Prints: HOMESERVER TOKEN ROOM_ID (a new login, so a new device, and a new room, per call).
# Stop: kill "$(cat $DIR/pid)".
set -euo pipefail
PORT=${SYNAPSE_PORT:-8018}
ROOT=${TMPDIR:-/tmp}/commcal-servers
DIR=${SYNAPSE_DIR:-$ROOT/synapse-tests}
V=$ROOT/synapse-venv
URL=http://127.0.0.1:$PORT
[ -x "$V/bin/python" ] || { python3 -m venv "$V"; "$V/bin/pip" install -q matrix-synapse; }
if ! curl -sf "$URL/_matrix/client/versions" >/dev/null; then
  rm -rf "$DIR"; mkdir -p "$DIR"; cd "$DIR"
  "$V/bin/python" -m synapse.app.homeserver --server-name localhost --config-path hs.yaml \
    --generate-config --report-stats=no -H localhost >/dev/null
  PORT=$PORT python3 - <<'PY'
import os
port = os.environ["PORT"]
s = open("hs.yaml").read().replace("    - ::1\n", "").replace("port: 8008", f"port: {port}")
fast = "{per_second: 1000, burst_count: 1000}"
s += f"""
rc_message: {fast}
rc_login:
  address: {fast}
  account: {fast}
  failed_attempts: {fast}
rc_room_creation: {fast}
rc_joins:
  local: {fast}
  remote: {fast}
rc_joins_per_room: {fast}
rc_invites:
  per_room: {fast}
  per_user: {fast}
  per_issuer: {fast}
rc_registration: {fast}
rc_media_create: {fast}
rc_admin_redaction: {fast}
rc_profile: {fast}
"""
open("hs.yaml", "w").write(s)
PY
  "$V/bin/python" -m synapse.app.homeserver -c hs.yaml > hs.out 2>&1 & echo $! > pid
  for _ in $(seq 90); do curl -sf "$URL/_matrix/client/versions" >/dev/null && break; sleep 1; done
  "$V/bin/register_new_matrix_user" -c hs.yaml -u bot -p botpass123 --no-admin "$URL" >/dev/null
fi
cd "$DIR"
TOKEN=$(curl -s -X POST "$URL/_matrix/client/v3/login" \
  -d '{"type":"m.login.password","identifier":{"type":"m.id.user","user":"bot"},"password":"botpass123"}' |
  python3 -c "import sys,json;print(json.load(sys.stdin)['access_token'])")
ROOM=$(curl -s -X POST -H "Authorization: Bearer $TOKEN" "$URL/_matrix/client/v3/createRoom" \
  -d '{"name":"announcements"}' | python3 -c "import sys,json;print(json.load(sys.stdin)['room_id'])")
echo "$URL $TOKEN $ROOM"
