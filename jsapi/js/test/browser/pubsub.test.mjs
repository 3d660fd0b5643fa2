// Publishing: CometQL inserts, browser publishes (web_pipe_send), history,
// counting subscribers and user data, across browsers and origins.
import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';
import {
  T,
  ask,
  closeQL,
  contexts,
  launch,
  openClient,
  pageServer,
  ql,
  record,
  str,
  unrecord,
  uniq,
  uniqId,
  until,
  waitConnected,
  waitEvents,
  waitSubscribers,
  events,
} from './lib.mjs';

let browser;
let other;
const ctx = contexts(() => browser);
before(async () => {
  browser = await launch();
  other = await pageServer();
});
afterEach(() => ctx.closeAll());
after(async () => {
  await browser?.close();
  await other?.close();
  await closeQL();
});

test('a CometQL insert reaches subscribers in two browsers (same origin and another origin)', { timeout: T }, async () => {
  const pipe = uniq('e2e_');
  const a = await openClient(await ctx.make(), { name: 'a', subs: [pipe, pipe + '.ev', ''] });
  const b = await openClient(await ctx.make(), { name: 'b', origin: other.origin, subs: [pipe] });
  await waitSubscribers(pipe, 2);
  assert.equal(await a.evaluate(() => cometApi.getTransport()), 'ws');
  assert.equal(await b.evaluate(() => cometApi.getTransport()), 'ws');

  const body = { n: 1, s: 'it\'s "quoted" \\ <b>bold</b>', u: 'é ✓ 😀', nl: 'a\nb' };
  const res = await ql(`INSERT INTO pipes_messages (name, event, message) VALUES (${str(pipe)}, 'ev', ${str(JSON.stringify(body))})`);
  assert.equal(res.affectedRows, 1);
  for (const p of [a, b]) {
    const [e] = await waitEvents(p, pipe);
    assert.deepEqual(e.data, body);
    assert.equal(e.info.event, 'ev');
    assert.equal(e.info.pipe, pipe);
    assert.equal(e.info.user_id, 0);
    assert.equal(e.info.history, false);
  }
  await waitEvents(a, pipe + '.ev'); // "pipe.event" subscribers too
  await waitEvents(a, '', 1, { 'info.pipe': pipe }); // and "everything" subscribers

  // Text that is not JSON arrives as the string inserted.
  await ql(`INSERT INTO pipes_messages (name, event, message) VALUES (${str(pipe)}, 'txt', 'plain, it''s\\ttabbed')`);
  const [t] = await waitEvents(b, pipe, 1, { 'info.event': 'txt' });
  assert.equal(t.data, "plain, it's\ttabbed");

  // Unsubscribing really unsubscribes: the server's count drops.
  await unrecord(a, pipe);
  await unrecord(a, pipe + '.ev');
  await waitSubscribers(pipe, 1);
});

test('frames of every size arrive intact: around 125 bytes and around 64 KiB (both WebSocket length forms)', { timeout: T }, async () => {
  const pipe = uniq('sizes_');
  const p = await openClient(await ctx.make(), { name: 'sizes', subs: [pipe] });
  await waitSubscribers(pipe, 1);
  // One multi-row insert: messages of 1..160 characters, so the frames go
  // through 123..127 bytes and the 7-bit/16-bit length boundary.
  const small = Array.from({ length: 160 }, (_, i) => 'x'.repeat(i) + String.fromCharCode(97 + (i % 26)));
  const res = await ql(`INSERT INTO pipes_messages (name, event, message) VALUES ${small.map((m) => `(${str(pipe)}, 's', ${str(m)})`).join(', ')}`);
  assert.equal(res.affectedRows, small.length);
  const got = await waitEvents(p, pipe, small.length);
  assert.deepEqual(got.map((e) => e.data), small);
  // Large ones across the 65535-byte frame length (the 16-bit/64-bit boundary).
  const big = [65000, 65400, 65450, 65480, 65500, 65536].map((n, i) => String(i) + 'y'.repeat(n - 1));
  for (const m of big) await ql(`INSERT INTO pipes_messages (name, event, message) VALUES (${str(pipe)}, 'b', ${str(m)})`);
  const gotBig = await waitEvents(p, pipe, big.length, { 'info.event': 'b' });
  assert.deepEqual(gotBig.map((e) => e.data.length), big.map((m) => m.length));
  assert.ok(gotBig.every((e, i) => e.data === big[i]), 'large messages intact');
});

test('web_pipe_send between browsers: sender user_id, delivery report (#pipe) with number_messages', { timeout: T }, async () => {
  const pipe = uniq('web_e2e_');
  const id = uniqId();
  const key = uniq('key');
  await ql(`INSERT INTO users_auth (id, hash) VALUES (${id}, ${str(key)})`);
  const a = await openClient(await ctx.make(), { name: 'sender', subs: [pipe, '#' + pipe], start: { user_id: id, user_key: key } });
  const b = await openClient(await ctx.make(), { name: 'b', subs: [pipe] });
  const c = await openClient(await ctx.make(), { name: 'c', origin: other.origin, subs: [pipe, '#' + pipe] });
  await waitSubscribers(pipe, 3);
  await waitConnected(a);
  assert.equal(await a.evaluate(() => cometApi.isAuthorized()), true);

  const msg = { text: 'hi it\'s "me" <i>x</i>', n: 7 };
  assert.equal(await a.evaluate(([p, m]) => cometApi.web_pipe_send(p, 'chat', m), [pipe, msg]), true);
  for (const p of [b, c]) {
    const [e] = await waitEvents(p, pipe, 1, { 'info.event': 'chat' });
    assert.deepEqual(e.data, msg);
    assert.equal(e.info.user_id, id, 'the sender is authorized: its user_id comes along');
  }
  const [rep] = await waitEvents(a, '#' + pipe);
  assert.equal(rep.data.number_messages, 2, `report ${JSON.stringify(rep.data)}`);
  assert.deepEqual(JSON.parse(rep.data.message), msg);
  assert.equal((await events(a, pipe)).length, 0, 'the sender does not get its own message back');

  // An anonymous sender, and the two-argument form "pipe.event".
  await c.evaluate((p) => cometApi.web_pipe_send(p + '.short', 'two args'), pipe);
  const [e2] = await waitEvents(b, pipe, 1, { 'info.event': 'short' });
  assert.equal(e2.data, 'two args');
  assert.equal(e2.info.user_id, 0);
  const [rep2] = await waitEvents(c, '#' + pipe);
  assert.equal(rep2.data.number_messages, 2);

  // "@pipe" publishes anonymously even from an authorized connection.
  await a.evaluate((p) => cometApi.web_pipe_send('@' + p, 'anon', { a: 1 }), pipe);
  const [e3] = await waitEvents(b, pipe, 1, { 'info.event': 'anon' });
  assert.equal(e3.info.user_id, 0);
});

test('history: pipes_settings, then get_pipe_log replays the kept messages oldest first', { timeout: T }, async () => {
  const pipe = uniq('web_hist_');
  const id = uniqId();
  const key = uniq('key');
  await ql(`INSERT INTO users_auth (id, hash) VALUES (${id}, ${str(key)})`);
  await ql(`INSERT INTO pipes_settings (name, length) VALUES (${str(pipe)}, 3)`);
  for (let i = 1; i <= 4; i++) {
    await ql(`INSERT INTO pipes_messages (name, event, message) VALUES (${str(pipe)}, 'm', '{"n":${i}}')`);
  }
  // A browser's message is kept too, with its sender.
  const w = await openClient(await ctx.make(), { name: 'writer', start: { user_id: id, user_key: key } });
  await waitConnected(w);
  await w.evaluate((p) => cometApi.web_pipe_send(p, 'm', { n: 5 }), pipe);
  const rows = await until(async () => {
    const r = await ql(`SELECT * FROM pipes_messages WHERE name = ${str(pipe)}`);
    return r.length === 3 && JSON.parse(r[2].message).n === 5 && r;
  }, 'the browser message in the history');
  assert.deepEqual(rows.map((r) => JSON.parse(r.message).n), [3, 4, 5]);
  assert.equal(Number(rows[2].user_id), id);

  const r = await openClient(await ctx.make(), { name: 'reader' });
  await r.evaluate((p) => {
    cometApi.get_pipe_log(p, (e) => window.__ev.push({ sub: 'log', data: e.data, info: e.server_info }));
  }, pipe);
  const log = await waitEvents(r, 'log', 3);
  assert.deepEqual(log.map((e) => e.data.n), [3, 4, 5]);
  assert.ok(log.every((e) => e.info.history === true), 'replayed messages carry history: true');
  assert.deepEqual(log.map((e) => e.info.user_id), [0, 0, id]);

  // A live message after the replay arrives once, not as history.
  await waitSubscribers(pipe, 1);
  await ql(`INSERT INTO pipes_messages (name, event, message) VALUES (${str(pipe)}, 'm', '{"n":6}')`);
  const all = await waitEvents(r, 'log', 4);
  assert.equal(all[3].data.n, 6);
  assert.equal(all[3].info.history, false);
  assert.equal((await events(r, 'log')).length, 4);
});

test('count_users_in_pipe counts connections (tabs of one browser are one)', { timeout: T }, async () => {
  const pipe = uniq('web_cnt_');
  const shared = await ctx.make();
  const a1 = await openClient(shared, { name: 'a1', subs: [pipe] });
  await waitConnected(a1);
  const a2 = await openClient(shared, { name: 'a2', subs: [pipe] });
  const b = await openClient(await ctx.make(), { name: 'b', subs: [pipe] });
  const c = await openClient(await ctx.make(), { name: 'c', origin: other.origin, subs: [pipe] });
  await waitSubscribers(pipe, 3);
  await waitConnected(a2);
  for (const p of [a1, a2, b, c]) {
    const r = await ask(p, 'count_users_in_pipe', pipe);
    assert.equal(r.data.user_in_pipe, 3, `${JSON.stringify(r.data)}`);
    assert.equal(r.info.marker !== undefined, true);
  }
  // The one-shot answer reaches only the asker: no subscriber sees it.
  await record(b, '');
  await ask(b, 'count_users_in_pipe', pipe);
  assert.equal((await events(b, '')).filter((e) => e.info.event === 'user_in_pipe').length, 0);
});

test('getUserData returns users_data', { timeout: T }, async () => {
  const id = uniqId();
  const data = JSON.stringify({ nick: "it's me", about: '<b>x</b>' });
  await ql(`INSERT INTO users_data (id, data) VALUES (${id}, ${str(data)})`);
  const p = await openClient(await ctx.make(), { name: 'p' });
  await waitConnected(p);
  const r = await ask(p, 'getUserData', id);
  assert.equal(Number(r.data.user_id), id);
  assert.equal(r.data.user_data, data);
  const none = await ask(p, 'getUserData', id + 1);
  assert.equal(none.data.user_data, '');
});
