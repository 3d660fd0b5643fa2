// A server restart loses no message of a logging pipe: the page reconnects
// by itself and recovers, through seq, what was published while it was away.
// This test runs a cometql of its own (COMETQL_BIN): it stops it with
// SIGTERM and starts it again on the same ports and data directory.
import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';
import {
  BIN,
  connectQL,
  contexts,
  events,
  launch,
  openClient,
  startServer,
  str,
  tempDir,
  uniq,
  waitEvents,
  waitSubscribers,
} from './lib.mjs';

let browser;
let srv = null;
let conn = null;
const ctx = contexts(() => browser);
before(async () => {
  browser = await launch();
});
afterEach(() => ctx.closeAll());
after(async () => {
  await browser?.close();
  await conn?.end().catch(() => {});
  await srv?.stop();
});

async function q(sql) {
  const [res] = await conn.query(sql);
  return res;
}

// wireLog records what the server sent the page on pipe, as seq numbers
// ("4h" for a history frame), and the commands the page sent: the trace
// printed when messages go missing.
function wireLog(page, pipe) {
  const log = [];
  const frames = (text) => {
    for (const line of String(text).split('\n')) {
      if (!line.includes(pipe)) continue;
      try {
        const f = JSON.parse(line);
        if (f.pipe === pipe) log.push(f.seq + (f.history ? 'h' : ''));
      } catch {
        log.push('?');
      }
    }
  };
  const sent = (cmd) => log.push('>' + String(cmd).split('\n')[0]);
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => sent(f.payload));
    ws.on('framereceived', (f) => frames(f.payload));
  });
  // Long-polling, as XHR or (after a network failure) JSONP.
  page.on('request', (r) => {
    if (r.url().includes('/lp/send')) sent(r.postData() ?? new URL(r.url()).searchParams.get('cmd'));
  });
  page.on('response', async (r) => {
    if (!r.url().includes('/lp/poll')) return;
    const text = await r.text().catch(() => '');
    const json = text.startsWith('{') ? text : text.slice(text.indexOf('(') + 1, text.lastIndexOf(')'));
    let body = {};
    try {
      body = JSON.parse(json);
    } catch {
      log.push('?poll');
    }
    for (const f of body.frames || []) frames(typeof f === 'string' ? f : JSON.stringify(f));
  });
  return log;
}

// restartScenario runs the test with the page on WebSocket, or with
// long-polling when init takes WebSocket away.
async function restartScenario(init, opt) {
  try {
    await restartSteps(init, opt);
  } finally {
    await conn?.end().catch(() => {});
    conn = null;
    await srv?.stop();
    srv = null;
  }
}

// holdRecovery delays the page's long-poll "pipe_log" requests by ms, so
// that live messages published meanwhile reach it before the replay of the
// missed ones (the race the client must handle, made certain).
async function holdRecovery(page, ms) {
  await page.route('**/lp/send?*', async (route) => {
    const r = route.request();
    const cmd = r.postData() ?? new URL(r.url()).searchParams.get('cmd') ?? '';
    if (cmd.startsWith('pipe_log\n')) await new Promise((res) => setTimeout(res, ms)); // a delay injected, not a wait for a condition
    await route.continue().catch(() => {});
  });
}

async function restartSteps(init, { delayRecovery = 0 } = {}) {
  const dir = tempDir('cometql-restart-');
  srv = await startServer({ dataDir: dir });
  conn = await connectQL(srv.ql);
  const base = 'http://' + srv.http;
  const pipe = uniq('restart_');
  let n = 0;
  const publish = () => q(`INSERT INTO pipes_messages (name, event, message) VALUES (${str(pipe)}, 'm', '{"n":${++n}}')`);

  await q(`INSERT INTO pipes_settings (name, length) VALUES (${str(pipe)}, 1000)`);
  const page = await openClient(await ctx.make(), { name: 'restart', base, subs: [pipe], init });
  const wire = wireLog(page, pipe);
  if (delayRecovery) await holdRecovery(page, delayRecovery);
  await waitSubscribers(pipe, 1, q);
  for (let i = 0; i < 3; i++) await publish();
  await waitEvents(page, pipe, 3);

  // Stop the server (graceful, as an operator would) and wait for the page
  // to notice. The page's browser also goes offline, so that it cannot come
  // back before the first messages after the restart are published.
  await conn.end();
  conn = null;
  const transport = await page.evaluate(() => cometApi.getTransport());
  const { ql: qlAddr, http: httpAddr } = srv;
  const stopped = await srv.stop();
  srv = null;
  assert.equal(stopped.code, 0, `cometql exit after SIGTERM: ${JSON.stringify(stopped)}`);
  await page.waitForFunction(() => !cometApi.isConnected(), null, { timeout: 10_000, polling: 50 });
  await page.context().setOffline(true);

  // Start it again on the same ports and data, and publish: these messages
  // go to history only, the page being away.
  srv = await startServer({ qlAddr, httpAddr, dataDir: dir });
  conn = await connectQL(srv.ql);
  const whileAway = [];
  for (let i = 0; i < 3; i++) {
    await publish();
    if (!(await page.evaluate(() => cometApi.isConnected()))) whileAway.push(n);
  }
  await page.context().setOffline(false);
  // Keep publishing while the page reconnects and recovers, and a second
  // after: live messages race the replay of the missed ones.
  const rate = () => new Promise((r) => setTimeout(r, 10)); // a publish rate, not a wait for a condition
  const end = Date.now() + 30_000;
  while ((await page.evaluate(() => cometApi.isConnected())) === false && Date.now() < end) {
    await publish();
    await rate();
  }
  for (const t = Date.now(); Date.now() - t < 1000; ) {
    await publish();
    await rate();
  }
  await waitSubscribers(pipe, 1, q);
  for (let i = 0; i < 5; i++) await publish();
  console.log(`restart (${transport}): ${n} messages, ${whileAway.length} published while the page was away (${whileAway.join(' ')})`);
  assert.ok(whileAway.length > 0, 'some messages were published while the page was disconnected');

  // The last message arrives last: once it is here, everything sent before it is too.
  await waitEvents(page, pipe, 1, { 'data.n': n }, 20_000);
  const got = (await events(page, pipe)).map((e) => e.data.n);
  const want = Array.from({ length: n }, (_, i) => i + 1);
  const missing = want.filter((x) => !got.includes(x));
  const twice = got.filter((x, i) => got.indexOf(x) !== i);
  assert.deepEqual({ missing, twice }, { missing: [], twice: [] }, `received ${got.join(' ')}; wire: ${wire.join(' ')}`);
  assert.deepEqual(got, want, 'in publish order');

  // The history kept its sequence across the restart.
  const rows = await q(`SELECT \`index\`, message FROM pipes_messages WHERE name = ${str(pipe)}`);
  assert.deepEqual(rows.map((r) => JSON.parse(r.message).n), want);
  const idx = rows.map((r) => Number(r.index));
  assert.ok(idx.every((x, i) => i === 0 || x > idx[i - 1]), `index strictly increasing: ${idx.join(' ')}`);
}

const skip = !BIN && 'COMETQL_BIN not set';

test('restart (WebSocket): every message of a logging pipe arrives exactly once, in order', { timeout: 90_000, skip }, () =>
  restartScenario(undefined),
);

// Over long-polling the page's "subscription" and its recovery "pipe_log
// ... since" are two requests: messages published between them arrive live
// before the replay of the missed ones, and must wait for it. The recovery
// request is held back 500 ms so that this happens every time.
test('restart (long-polling): every message of a logging pipe arrives exactly once, in order', { timeout: 90_000, skip }, () =>
  restartScenario(
    () => {
      window.WebSocket = undefined;
    },
    { delayRecovery: 500 },
  ),
);
