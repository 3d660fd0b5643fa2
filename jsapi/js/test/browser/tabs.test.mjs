// Tabs of one browser share one connection (SPEC 6.2): one tab holds it
// (isMaster), the others talk through it, and one takes over when it closes.
import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';
import {
  T,
  ask,
  closeQL,
  contexts,
  events,
  launch,
  openClient,
  ql,
  record,
  str,
  uniq,
  uniqId,
  until,
  waitConnected,
  waitEvents,
  waitSubscribers,
} from './lib.mjs';

let browser;
const ctx = contexts(() => browser);
before(async () => {
  browser = await launch();
});
afterEach(() => ctx.closeAll());
after(async () => {
  await browser?.close();
  await closeQL();
});

const publish = (pipe, n) => ql(`INSERT INTO pipes_messages (name, event, message) VALUES (${str(pipe)}, 'e', '{"n":${n}}')`);

test('two tabs share one connection: isMaster in exactly one; both get messages; takeover on close', { timeout: T }, async () => {
  const pipe = uniq('web_tabs_');
  const c = await ctx.make();
  const t1 = await openClient(c, { name: 'tab1', subs: [pipe] });
  await waitConnected(t1);
  const t2 = await openClient(c, { name: 'tab2', subs: [pipe] });
  const t3 = await openClient(c, { name: 'tab3', subs: [pipe] });
  for (const t of [t2, t3]) await waitConnected(t);
  const masters = await Promise.all([t1, t2, t3].map((t) => t.evaluate(() => cometApi.isMaster())));
  assert.deepEqual(masters.filter((m) => m === true).length, 1, `isMaster: ${masters}`);
  assert.ok(masters.every((m) => m === true || m === false), `isMaster: ${masters}`);
  await waitSubscribers(pipe, 1);
  const rows = await ql(`SELECT COUNT(*) AS n FROM users_in_pipes WHERE name = ${str(pipe)}`);
  assert.equal(Number(rows[0].n), 1, 'one connection in users_in_pipes');
  assert.equal((await ask(t3, 'count_users_in_pipe', pipe)).data.user_in_pipe, 1);

  await publish(pipe, 1);
  for (const t of [t1, t2, t3]) await waitEvents(t, pipe, 1, { 'data.n': 1 });

  // A follower's own subscription goes to the server through the leader.
  const p2 = uniq('tabs2_');
  await record(t3, p2);
  await waitSubscribers(p2, 1);
  await publish(p2, 2);
  await waitEvents(t3, p2, 1, { 'data.n': 2 });

  // The tab holding the connection closes: another takes over.
  const leader = [t1, t2, t3][masters.indexOf(true)];
  const rest = [t1, t2, t3].filter((t) => t !== leader);
  await leader.close({ runBeforeUnload: true });
  const took = async () => {
    const st = await Promise.all(rest.map((t) => t.evaluate(() => cometApi.isMaster() === true && cometApi.isConnected())));
    return st.some(Boolean);
  };
  await until(took, 'another tab to take the connection over', 15_000);
  for (const t of rest) await waitConnected(t, 15_000);
  const after2 = await Promise.all(rest.map((t) => t.evaluate(() => cometApi.isMaster())));
  assert.equal(after2.filter((m) => m === true).length, 1, `isMaster after takeover: ${after2}`);
  await waitSubscribers(pipe, 1);
  await waitSubscribers(p2, 1);
  await publish(pipe, 3);
  await publish(p2, 4);
  for (const t of rest) await waitEvents(t, pipe, 1, { 'data.n': 3 });
  await waitEvents(t3, p2, 1, { 'data.n': 4 });
  for (const t of rest) {
    const got = (await events(t, pipe)).map((e) => e.data.n);
    assert.deepEqual(got, [1, 3], 'each message once');
  }
});

test('web_pipe_send from one tab reaches the other tab of the browser and another browser once, not the sender', { timeout: T }, async () => {
  // The server does not send a browser message back to the connection that
  // sent it (SPEC 3.4); the tabs share that connection, so the client hands
  // the other tabs their copy once the server reported the delivery.
  const pipe = uniq('web_own_');
  const id = uniqId();
  const key = uniq('key');
  await ql(`INSERT INTO users_auth (id, hash) VALUES (${id}, ${str(key)})`);
  const c = await ctx.make();
  const start = { user_id: id, user_key: key };
  const t1 = await openClient(c, { name: 'tab1', subs: [pipe, '#' + pipe], start });
  await waitConnected(t1);
  const t2 = await openClient(c, { name: 'tab2', subs: [pipe, '#' + pipe], start });
  const other = await openClient(await ctx.make(), { name: 'other browser', subs: [pipe] });
  for (const t of [t2, other]) await waitConnected(t);
  await waitSubscribers(pipe, 2);
  const masters = await Promise.all([t1, t2].map((t) => t.evaluate(() => cometApi.isMaster())));
  assert.deepEqual(masters.filter((m) => m === true).length, 1, `isMaster: ${masters}`);

  // Once from the tab holding the connection, once from the other tab.
  const senders = masters[0] ? [t1, t2] : [t2, t1];
  for (let k = 0; k < 2; k++) {
    const from = senders[k];
    const to = senders[1 - k];
    const msg = { n: k, text: `from tab ${k}` };
    assert.equal(await from.evaluate(([p, m]) => cometApi.web_pipe_send(p, 'chat', m), [pipe, msg]), true);
    await waitEvents(from, '#' + pipe, 1, { 'data.message': JSON.stringify(msg) });
    const [e] = await waitEvents(to, pipe, 1, { 'data.n': k });
    const [o] = await waitEvents(other, pipe, 1, { 'data.n': k });
    assert.deepEqual(e.data, msg);
    // As another browser gets it from the server, but for the message id
    // (uuid), which the delivery report does not carry.
    const info = ({ uuid, marker, ...rest }) => rest;
    assert.deepEqual(info(e.info), info(o.info), 'the same as another browser gets from the server');
    assert.deepEqual(info(e.info), { user_id: id, pipe, event: 'chat', history: false });
  }

  // The last message arrives last: after it, nothing more can come.
  await ql(`INSERT INTO pipes_messages (name, event, message) VALUES (${str(pipe)}, 'e', '{"n":"end"}')`);
  for (const t of [t1, t2, other]) await waitEvents(t, pipe, 1, { 'data.n': 'end' });
  for (const [t, want] of [[senders[0], [1, 'end']], [senders[1], [0, 'end']], [other, [0, 1, 'end']]]) {
    assert.deepEqual((await events(t, pipe)).map((e) => e.data.n), want, 'each message once, never back to its sender');
  }
});

test("the original's tab signal bus and start() callbacks work in every tab", { timeout: T }, async () => {
  const c = await ctx.make();
  // A page written for CppComet: start(opt, callback), then
  // comet_server_signal() between its own code and the other tabs.
  const setup = () => {
    window.__started = 0;
    window.__signals = [];
    comet_server_signal().connect('AddToChat', (p, name, other) => window.__signals.push([p.text, name, other]));
  };
  const t1 = await openClient(c, { name: 'sig1' });
  await t1.evaluate(setup);
  await waitConnected(t1);
  // start() again once connected: the callback runs at once.
  await t1.evaluate(() => cometApi.start({}, () => { window.__started++; }));
  const t2 = await openClient(c, { name: 'sig2' });
  await t2.evaluate(setup);
  await t2.evaluate(() => cometApi.start({}, () => { window.__started++; }));
  await waitConnected(t2);
  for (const t of [t1, t2]) {
    await until(async () => (await t.evaluate(() => window.__started)) >= 1, 'the start callback', 10_000);
  }
  assert.deepEqual(await Promise.all([t1, t2].map((t) => t.evaluate(() => cometApi.isMaster()))).then((m) => m.sort()), [false, true]);

  await t1.evaluate(() => comet_server_signal().send_emit('AddToChat', { text: 'here only' }));
  await t1.evaluate(() => comet_server_signal().emitAll('AddToChat', { text: 'everywhere' }));
  await until(async () => (await t2.evaluate(() => window.__signals.length)) >= 1, 'the signal in the other tab', 10_000);
  assert.deepEqual(await t1.evaluate(() => window.__signals), [['here only', 'AddToChat', false], ['everywhere', 'AddToChat', false]]);
  assert.deepEqual(await t2.evaluate(() => window.__signals), [['everywhere', 'AddToChat', true]]);
});
