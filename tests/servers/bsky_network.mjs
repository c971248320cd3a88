// A real Bluesky network on loopback for commcal's tests: PLC + PDS + AppView (+ the services
// @atproto/dev-env's TestNetwork starts with them), the AppView on the machine's PostgreSQL and
// Redis. Written from ../shared/servers/bsky_pds.sh (which installs node 22 and dev-env).
// Env: DB_POSTGRES_URL, REDIS_HOST, RUN_DIR, NET_PORT_BASE. Writes $RUN_DIR/network.json once up:
// {"pds": url, "appview": url, "control": url}. POST {control}/process waits until the AppView
// has indexed everything the PDS has written (TestNetwork.processAll). Runs until SIGTERM.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const BIND_HOST = '127.0.0.1';
const origListen = http.Server.prototype.listen;
http.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, BIND_HOST);
  }
  return origListen.apply(this, args);
};

const RUN_DIR = process.env.RUN_DIR;
const base = Number(process.env.NET_PORT_BASE || 2690);
const READY = path.join(RUN_DIR, 'network.json');
fs.rmSync(READY, { force: true });
fs.writeFileSync(path.join(RUN_DIR, 'network.pid'), `${process.pid}\n`);

const { TestNetwork } = await import('@atproto/dev-env');
const network = await TestNetwork.create({
  dbPostgresUrl: process.env.DB_POSTGRES_URL,
  dbPostgresSchema: process.env.DB_POSTGRES_SCHEMA || "commcal_net",
  plc: { port: base },
  pds: { port: base + 1 },
  bsky: { port: base + 2 },
});

const control = http.createServer(async (req, res) => {
  try {
    if (req.method === 'POST' && req.url === '/process') {
      await network.processAll();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"processed":true}');
      return;
    }
    res.writeHead(404);
    res.end();
  } catch (err) {
    res.writeHead(500);
    res.end(String(err));
  }
});
await new Promise((resolve) => control.listen(base + 3, BIND_HOST, resolve));

fs.writeFileSync(
  READY,
  JSON.stringify({
    pds: `http://127.0.0.1:${base + 1}`,
    appview: `http://127.0.0.1:${base + 2}`,
    appview_did: network.bsky.ctx.cfg.serverDid,
    control: `http://127.0.0.1:${base + 3}`,
  }) + '\n',
);
console.log('network up', fs.readFileSync(READY, 'utf8'));

let closing = false;
const shutdown = async () => {
  if (closing) return;
  closing = true;
  setTimeout(() => process.exit(0), 5000).unref();
  try { await network.close(); } catch (e) { console.error(e); }
  fs.rmSync(READY, { force: true });
  process.exit(0);
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
