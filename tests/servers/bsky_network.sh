#!/usr/bin/env bash
# Start (or reuse) a real Bluesky network with an AppView on 127.0.0.1 for commcal's tests:
# installs what it needs through ../shared/servers/bsky_pds.sh (node 22 and @atproto/dev-env from
# the npm registry), then runs tests/servers/bsky_network.mjs against this machine's PostgreSQL
# and Redis. Last line of stdout: the JSON of $RUN_DIR/network.json. Stop: kill "$(cat $RUN_DIR/network.pid)".
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PDS_SCRIPT=${COMMCAL_BSKY_PDS_SCRIPT:-$HERE/../../../shared/servers/bsky_pds.sh}
ATP_DIR=${ATP_DIR:-${TMPDIR:-/tmp}/commcal-servers/atp}
NODE22_DIR=${NODE22_DIR:-${TMPDIR:-/tmp}/commcal-servers/node22}
export RUN_DIR=${NET_RUN_DIR:-${TMPDIR:-/tmp}/commcal-servers/bsky-network}
export DB_POSTGRES_URL=${DB_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
export REDIS_HOST=${REDIS_HOST:-127.0.0.1:6379}
export NET_PORT_BASE=${NET_PORT_BASE:-2690}
mkdir -p "$RUN_DIR"

up() {
  [[ -f $RUN_DIR/network.json && -f $RUN_DIR/network.pid ]] && kill -0 "$(cat "$RUN_DIR/network.pid")" 2>/dev/null \
    && curl -fsS "$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["pds"])' "$RUN_DIR/network.json")/xrpc/_health" >/dev/null 2>&1
}
if up; then cat "$RUN_DIR/network.json"; exit 0; fi

[[ -x $NODE22_DIR/package/bin/node && -f $ATP_DIR/node_modules/@atproto/dev-env/package.json ]] \
  || bash "$PDS_SCRIPT" >/dev/null
export PATH="$NODE22_DIR/package/bin:$PATH"
if [[ -f $RUN_DIR/network.pid ]]; then kill "$(cat "$RUN_DIR/network.pid")" 2>/dev/null || true; sleep 1; fi
rm -f "$RUN_DIR/network.json"
# Each start indexes from nothing: the previous run's schemas go (the PDS's data is in memory).
export DB_POSTGRES_SCHEMA=commcal_net
for s in appview bsync ozone; do
  psql -q "$DB_POSTGRES_URL" -c "DROP SCHEMA IF EXISTS ${s}_$DB_POSTGRES_SCHEMA CASCADE" >/dev/null 2>&1 || true
done
cp "$HERE/bsky_network.mjs" "$ATP_DIR/commcal_network.mjs"
setsid nohup node "$ATP_DIR/commcal_network.mjs" >"$RUN_DIR/network.log" 2>&1 </dev/null &
LAUNCH=$!
for _ in $(seq 240); do
  [[ -f $RUN_DIR/network.json ]] && break
  kill -0 "$LAUNCH" 2>/dev/null || { echo "network exited:" >&2; tail -n 40 "$RUN_DIR/network.log" >&2; exit 1; }
  sleep 0.5
done
[[ -f $RUN_DIR/network.json ]] || { echo "timed out" >&2; tail -n 40 "$RUN_DIR/network.log" >&2; exit 1; }
cat "$RUN_DIR/network.json"
