// Users: authorization with users_auth, private messages on every device and
// from the offline queue, online status, and track_* membership.
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
  str,
  unrecord,
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

async function newUser() {
  const id = uniqId();
  const key = uniq('key');
  await ql(`INSERT INTO users_auth (id, hash) VALUES (${id}, ${str(key)})`);
  return { id, key };
}

test('private messages: the offline queue on connect, then every device gets users_messages', { timeout: T }, async () => {
  const u = await newUser();
  const start = { user_id: u.id, user_key: u.key };
  await ql(`INSERT INTO users_messages (id, event, message) VALUES (${u.id}, 'q', 'queued 1'), (${u.id}, 'q', '{"n":2}')`);
  assert.equal((await ql(`SELECT * FROM users_messages WHERE id = ${u.id}`)).length, 2, 'queued while offline');

  const d1 = await openClient(await ctx.make(), { name: 'device1', subs: ['msg', 'msg.live'], start });
  const queued = await waitEvents(d1, 'msg', 2);
  assert.deepEqual(queued.map((e) => e.data), ['queued 1', { n: 2 }], 'in order, all of them');
  assert.deepEqual(queued.map((e) => e.info.event), ['q', 'q']);
  assert.equal(await d1.evaluate(() => cometApi.isAuthorized()), true);
  await until(async () => (await ql(`SELECT * FROM users_messages WHERE id = ${u.id}`)).length === 0, 'the queue to empty');

  const d2 = await openClient(await ctx.make(), { name: 'device2', subs: ['msg', 'msg.live'], start });
  const anon = await openClient(await ctx.make(), { name: 'wrong key', subs: ['msg'], start: { user_id: u.id, user_key: 'wrong' } });
  await waitConnected(d2);
  await waitConnected(anon);
  assert.equal(await d2.evaluate(() => cometApi.isAuthorized()), true);
  assert.equal(await anon.evaluate(() => cometApi.isAuthorized()), false, 'a wrong key is anonymous');

  const res = await ql(`INSERT INTO users_messages (id, event, message) VALUES (${u.id}, 'live', '{"text":"to both"}')`);
  assert.equal(res.affectedRows, 1);
  for (const d of [d1, d2]) {
    const [e] = await waitEvents(d, 'msg.live');
    assert.deepEqual(e.data, { text: 'to both' });
    assert.equal(e.info.pipe, 'msg');
  }
  assert.equal((await events(d2, 'msg')).length, 1, 'the queue was delivered once, to the first device');
  assert.equal((await events(anon, 'msg')).length, 0, 'an anonymous page gets no private message');
  assert.equal((await ql(`SELECT * FROM users_messages WHERE id = ${u.id}`)).length, 0, 'nothing queued: it was delivered');
});

test('presence: user_status_<id> online with the first device, offline when the last one closes', { timeout: T }, async () => {
  const u = await newUser();
  const start = { user_id: u.id, user_key: u.key };
  const status = `user_status_${u.id}`;
  const here = uniq('presence_');
  const watcher = await openClient(await ctx.make(), { name: 'watcher', subs: [status] });
  await waitSubscribers(status, 1);
  const time0 = await ql(`SELECT time FROM users_time WHERE id = ${u.id}`);
  assert.equal(Number(time0[0].time), -1, 'never seen');

  const c1 = await ctx.make();
  const d1 = await openClient(c1, { name: 'device1', subs: [here], start });
  const [on] = await waitEvents(watcher, status, 1, { 'info.event': 'online' });
  assert.equal(on.data, 'online');
  assert.equal(Number((await ql(`SELECT time FROM users_time WHERE id = ${u.id}`))[0].time), 0, 'online now');

  const c2 = await ctx.make();
  await openClient(c2, { name: 'device2', subs: [here], start });
  await waitSubscribers(here, 2);
  await c2.close(); // not the last device: still online
  await waitSubscribers(here, 1);
  await d1.close();
  const [off] = await waitEvents(watcher, status, 1, { 'info.event': 'offline' });
  assert.equal(off.data, 'offline');
  const evs = await events(watcher, status);
  assert.deepEqual(evs.map((e) => e.info.event), ['online', 'offline'], 'one online, one offline: no duplicates');
  const t = Number((await ql(`SELECT time FROM users_time WHERE id = ${u.id}`))[0].time);
  assert.ok(t > 1_600_000_000 && t <= Date.now() / 1000 + 5, `users_time = last seen (${t})`);
});

test('track pipes: subscription/unsubscription events and getTrackPipeUsers', { timeout: T }, async () => {
  const u = await newUser();
  const pipe = uniq('track_');
  const a = await openClient(await ctx.make(), { name: 'a', subs: [pipe + '.subscription', pipe + '.unsubscription'] });
  await waitSubscribers(pipe, 1);
  const aUuid = await a.evaluate(() => cometApi.getUUID());

  const b = await openClient(await ctx.make(), { name: 'b', subs: [pipe], start: { user_id: u.id, user_key: u.key } });
  const bUuid = await b.evaluate(() => cometApi.getUUID());
  assert.notEqual(aUuid, bUuid, 'separate browsers, separate uuids');
  const [join] = await waitEvents(a, pipe + '.subscription');
  assert.deepEqual(join.data, { user_id: u.id, uuid: bUuid });

  await waitConnected(b);
  for (const p of [a, b]) {
    const r = await ask(p, 'getTrackPipeUsers', pipe);
    const got = r.data.map((m) => `${m.user_id}/${m.uuid}`).sort();
    assert.deepEqual(got, [`0/${aUuid}`, `${u.id}/${bUuid}`].sort());
  }
  assert.equal((await ask(b, 'count_users_in_pipe', pipe)).data.user_in_pipe, 2);
  const own = (await events(b, pipe)).filter((e) => e.info.event === 'subscription' && e.data.uuid === bUuid);
  assert.equal(own.length, 0, 'a member does not get its own join');

  // Leaving by unsubscribing, and by closing the browser.
  await unrecord(b, pipe);
  const [leave] = await waitEvents(a, pipe + '.unsubscription');
  assert.deepEqual(leave.data, { user_id: u.id, uuid: bUuid });

  const cctx = await ctx.make();
  const c = await openClient(cctx, { name: 'c', subs: [pipe] });
  const cUuid = await c.evaluate(() => cometApi.getUUID());
  await waitEvents(a, pipe + '.subscription', 1, { 'data.uuid': cUuid });
  await cctx.close();
  await waitEvents(a, pipe + '.unsubscription', 1, { 'data.uuid': cUuid });
  const r = await ask(a, 'getTrackPipeUsers', pipe);
  assert.deepEqual(r.data.map((m) => m.uuid), [aUuid]);
  assert.equal((await events(a, pipe + '.subscription')).length, 2, 'no spurious subscription events');
});
