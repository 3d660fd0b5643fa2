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
  until,
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

test('restart: every message of a logging pipe arrives exactly once, in order', { timeout: 90_000, skip: !BIN && 'COMETQL_BIN not set' }, async () => {
  const dir = tempDir('cometql-restart-');
  srv = await startServer({ dataDir: dir });
  conn = await connectQL(srv.ql);
  const base = 'http://' + srv.http;
  const pipe = uniq('restart_');
  let n = 0;
  const publish = () => q(`INSERT INTO pipes_messages (name, event, message) VALUES (${str(pipe)}, 'm', '{"n":${++n}}')`);

  await q(`INSERT INTO pipes_settings (name, length) VALUES (${str(pipe)}, 1000)`);
  const page = await openClient(await ctx.make(), { name: 'restart', base, subs: [pipe] });
  await waitSubscribers(pipe, 1, q);
  for (let i = 0; i < 3; i++) await publish();
  await waitEvents(page, pipe, 3);

  // Stop the server (graceful, as an operator would) and wait for the page
  // to notice. The page's browser also goes offline, so that it cannot come
  // back before the first messages after the restart are published.
  await conn.end();
  conn = null;
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
  // Keep publishing while the page reconnects, and a little after.
  const end = Date.now() + 30_000;
  while ((await page.evaluate(() => cometApi.isConnected())) === false && Date.now() < end) {
    await publish();
    await new Promise((r) => setTimeout(r, 40)); // a publish rate, not a wait for a condition
  }
  await waitSubscribers(pipe, 1, q);
  for (let i = 0; i < 5; i++) await publish();
  console.log(`restart: ${n} messages, ${whileAway.length} published while the page was away (${whileAway.join(' ')})`);
  assert.ok(whileAway.length > 0, 'some messages were published while the page was disconnected');

  await waitEvents(page, pipe, n, {}, 20_000).catch(() => {});
  const got = (await events(page, pipe)).map((e) => e.data.n);
  const want = Array.from({ length: n }, (_, i) => i + 1);
  const missing = want.filter((x) => !got.includes(x));
  const twice = got.filter((x, i) => got.indexOf(x) !== i);
  assert.deepEqual({ missing, twice }, { missing: [], twice: [] }, `received ${got.join(' ')}`);
  assert.deepEqual(got, want, 'in publish order');

  // The history kept its sequence across the restart.
  const rows = await q(`SELECT \`index\`, message FROM pipes_messages WHERE name = ${str(pipe)}`);
  assert.deepEqual(rows.map((r) => JSON.parse(r.message).n), want);
  const idx = rows.map((r) => Number(r.index));
  assert.ok(idx.every((x, i) => i === 0 || x > idx[i - 1]), `index strictly increasing: ${idx.join(' ')}`);
  await until(async () => (await page.evaluate(() => cometApi.isConnected())) === true, 'the page to stay connected');
});
