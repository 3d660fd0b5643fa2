// Shared helpers of the browser tests: the environment, Chromium, pages with
// the client loaded, CometQL (through the mysql2 driver) and a cometql
// server of our own for the tests that restart one.
//
// Environment (scripts/browser-tests.sh sets all of it):
//   COMETQL_HTTP      the server's HTTP base, e.g. http://127.0.0.1:8087
//   COMETQL_MYSQL     its CometQL address, host:port
//   COMETQL_PASSWORD  the CometQL password of root
//   COMETQL_BIN       the cometql binary (for the restart test; skipped without)
//   CHROMIUM          the browser (default /usr/bin/chromium)
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import mysql from 'mysql2/promise';
import { chromium } from 'playwright-core';

export const HTTP = (process.env.COMETQL_HTTP || '').replace(/\/+$/, '');
export const MYSQL = process.env.COMETQL_MYSQL || '';
export const PASSWORD = process.env.COMETQL_PASSWORD || '';
export const BIN = process.env.COMETQL_BIN || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

if (!HTTP || !MYSQL) {
  console.error('set COMETQL_HTTP (http://host:port) and COMETQL_MYSQL (host:port), or run scripts/browser-tests.sh');
  process.exit(2);
}

/** T is the default timeout of one test (generous: CI machines have 2 cores). */
export const T = 60_000;

/** uniq returns a name no other test uses: prefix + random letters. */
export function uniq(prefix) {
  return prefix + Math.random().toString(36).slice(2, 10);
}

/** uniqId returns a user id no other test uses. */
let idSeq = 0;
export function uniqId() {
  return 1_000_000 + (Date.now() % 1_000_000) * 100 + (++idSeq % 100);
}

// ---- Chromium

/**
 * launch starts headless Chromium. Playwright gives every launch a new
 * empty --user-data-dir of its own (it refuses one in args); every browser
 * context is then a separate browser profile: its own localStorage (so its
 * own uuid) and its own connection.
 */
export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** watch prints a page's errors and client warnings, tagged with its name. */
export function watch(page, name) {
  page.errors = [];
  page.on('pageerror', (e) => {
    page.errors.push(e.message);
    console.error(`[${name}] page error: ${e.message}`);
  });
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    if (/\/favicon\.ico$/.test(m.location().url || '')) return; // no icon: not our concern
    console.error(`[${name}] console.${m.type()}: ${m.text()}`);
  });
  return page;
}

/**
 * openClient opens a page, loads the client from the server `base` (default
 * COMETQL_HTTP), installs the recorder (window.__ev, see record) for `subs`
 * and starts the client with `start` (node = the server). The page is the
 * server's own root page, or /client.html of `origin` (see pageServer) for a
 * page of another origin. `init` runs in the page before any of its scripts.
 */
export async function openClient(ctx, { name = 'page', base = HTTP, origin, subs = [], start = {}, init } = {}) {
  const page = watch(await ctx.newPage(), name);
  if (init) await page.addInitScript(init);
  if (origin) {
    await page.goto(origin + '/client.html?server=' + encodeURIComponent(base));
  } else {
    await page.goto(base + '/');
    await page.addScriptTag({ url: base + '/CometServerApi.js' });
  }
  await page.waitForFunction(() => typeof window.cometApi === 'object');
  await page.evaluate(installRecorder);
  await record(page, ...subs);
  await page.evaluate((o) => cometApi.start(o), { dev_id: 0, node: new URL(base).host, ...start });
  return page;
}

// installRecorder (runs in the page) keeps every callback the tests
// subscribe in window.__ev as {sub, data, info, at}.
function installRecorder() {
  window.__ev = [];
  window.__ids = {};
  window.__record = (name) => {
    window.__ids[name] = cometApi.subscription(name, (e) =>
      window.__ev.push({ sub: name, data: e.data, info: e.server_info, at: Date.now() }),
    );
  };
}

/** record subscribes the page's recorder to each name. */
export async function record(page, ...names) {
  for (const n of names) await page.evaluate((x) => window.__record(x), n);
}

/** unrecord removes the recorder's subscription to name (cometApi.unsubscription). */
export function unrecord(page, name) {
  return page.evaluate((x) => cometApi.unsubscription(window.__ids[x]), name);
}

/** contexts hands out browser contexts and closes them all at once. */
export function contexts(browserFn) {
  const list = [];
  return {
    async make(opt) {
      const c = await browserFn().newContext(opt);
      list.push(c);
      return c;
    },
    async closeAll() {
      await Promise.all(list.splice(0).map((c) => c.close().catch(() => {})));
    },
  };
}

/** events returns what the page recorded for subscription name `sub`. */
export function events(page, sub) {
  return page.evaluate((s) => window.__ev.filter((e) => e.sub === s), sub);
}

/**
 * waitEvents waits until the page recorded at least n events for `sub`
 * matching `where` (an object whose keys are paths such as "data.text" or
 * "info.event", compared with ===), and returns them.
 */
export async function waitEvents(page, sub, n = 1, where = {}, timeout = 10_000) {
  try {
    const h = await page.waitForFunction(
      ([s, k, w]) => {
        const get = (o, p) => p.split('.').reduce((x, key) => (x == null ? x : x[key]), o);
        const m = window.__ev.filter((e) => e.sub === s && Object.keys(w).every((p) => get(e, p) === w[p]));
        return m.length >= k && m;
      },
      [sub, n, where],
      { timeout, polling: 50 },
    );
    return await h.jsonValue();
  } catch (e) {
    const got = await events(page, sub).catch(() => '(page gone)');
    throw new Error(`waiting for ${n} event(s) on "${sub}" matching ${JSON.stringify(where)}: ${e.message.split('\n')[0]}; got ${JSON.stringify(got)}`);
  }
}

/** waitConnected waits until the page's client is connected (authorized or not). */
export async function waitConnected(page, timeout = 20_000) {
  await page.waitForFunction(() => cometApi.isConnected() && cometApi.isAuthorized() !== undefined, null, {
    timeout,
    polling: 50,
  });
}

/** ask runs one of the client's one-shot requests in the page and returns the callback's argument. */
export function ask(page, method, ...args) {
  return page.evaluate(
    ([m, a]) => new Promise((resolve) => cometApi[m](...a, (e) => resolve({ data: e.data, info: e.server_info }))),
    [method, args],
  );
}

// ---- Cross-origin pages

/**
 * pageServer serves /client.html (a page that loads the client from the
 * cometql server) on another port, so the page's origin differs from the
 * server's. Returns {origin, close}.
 */
export async function pageServer() {
  // The page loads the client from the server named in its query string.
  const html = `<!doctype html><meta charset="utf-8"><title>other origin</title>
<p>a page of another origin</p>
<script>
var s = document.createElement('script');
s.src = new URLSearchParams(location.search).get('server') + '/CometServerApi.js';
document.head.appendChild(s);
</script>`;
  const srv = http.createServer((req, res) => {
    if (req.url.split('?')[0] === '/client.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(html);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return { origin: `http://127.0.0.1:${srv.address().port}`, close: () => new Promise((r) => srv.close(r)) };
}

// ---- CometQL

/** connectQL opens a CometQL connection to host:port (default: COMETQL_MYSQL). */
export function connectQL(addr = MYSQL) {
  const i = addr.lastIndexOf(':');
  return mysql.createConnection({
    host: addr.slice(0, i).replace(/^\[|\]$/g, ''),
    port: Number(addr.slice(i + 1)),
    user: 'root',
    password: PASSWORD,
    database: 'CometQL_v1',
  });
}

let shared = null;

/** ql runs one statement on a shared connection to the test server; returns rows or the OK result. */
export async function ql(sql) {
  if (!shared) shared = connectQL();
  const conn = await shared;
  try {
    const [res] = await conn.query(sql);
    return res;
  } catch (e) {
    throw new Error(`CometQL ${sql}: ${e.message}`);
  }
}

/** closeQL closes the shared connection. */
export async function closeQL() {
  if (shared) {
    const c = shared;
    shared = null;
    await (await c).end().catch(() => {});
  }
}

/** str quotes a string as a MySQL literal. */
export function str(s) {
  return "'" + String(s).replace(/\\/g, '\\\\').replace(/'/g, "\\'") + "'";
}

/** until polls fn (async) until it returns a truthy value or the time is up. */
export async function until(fn, what, timeout = 10_000) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** subscribers returns how many connections the server has on pipe. */
export async function subscribers(pipe, q = ql) {
  const rows = await q(`SELECT users FROM pipes WHERE name = ${str(pipe)}`);
  return rows.length ? Number(rows[0].users) : 0;
}

/** waitSubscribers waits until the server counts exactly n connections on pipe. */
export function waitSubscribers(pipe, n, q = ql) {
  return until(async () => (await subscribers(pipe, q)) === n, `${n} subscriber(s) on ${pipe}`);
}

// ---- A server of our own (restart test)

/**
 * startServer runs COMETQL_BIN with the test password on the given
 * addresses (port 0 for any) and data dir, and resolves once it printed its
 * ready line: {proc, ql, http, stop()}. stop sends SIGTERM and waits.
 */
export async function startServer({ qlAddr = '127.0.0.1:0', httpAddr = '127.0.0.1:0', dataDir }) {
  const proc = spawn(
    BIN,
    ['--ql-addr', qlAddr, '--http-addr', httpAddr, '--data-dir', dataDir, '--password', PASSWORD],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const exited = once(proc, 'exit');
  const lines = createInterface({ input: proc.stdout });
  const ready = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`cometql not ready after 20 s; stderr: ${stderr}`)), 20_000);
    lines.on('line', (l) => {
      const m = /ready: CometQL on (\S+), HTTP on (\S+)/.exec(l);
      if (m) {
        clearTimeout(t);
        resolve({ ql: m[1], http: m[2] });
      }
    });
    exited.then(([code]) => {
      clearTimeout(t);
      reject(new Error(`cometql exited (${code}) before it was ready; stderr: ${stderr}`));
    });
  });
  const addrs = await ready;
  return {
    proc,
    ...addrs,
    stderr: () => stderr,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const [code, sig] = await exited;
      return { code, sig };
    },
  };
}

/** tempDir makes an empty directory that is removed when the process exits. */
export function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}
