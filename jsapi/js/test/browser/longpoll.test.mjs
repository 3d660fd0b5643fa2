// The long-polling fallback (SPEC 4) when WebSocket cannot be used: pages
// without WebSocket at all, and pages whose WebSocket never connects (the
// client gives up on it and falls back by itself), across origins.
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
  pageServer,
  ql,
  str,
  uniq,
  uniqId,
  waitConnected,
  waitEvents,
  waitSubscribers,
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

// noWebSocket runs in the page before its scripts: the browser has none.
function noWebSocket() {
  window.WebSocket = undefined;
}

// deadWebSocket runs in the page before its scripts: every WebSocket fails
// to connect, as behind a proxy that refuses the upgrade.
function deadWebSocket() {
  function Dead(url) {
    this.url = url;
    this.readyState = 0;
    setTimeout(() => {
      this.readyState = 3;
      if (this.onerror) this.onerror({ type: 'error' });
      if (this.onclose) this.onclose({ type: 'close', code: 1006, wasClean: false });
    }, 20);
  }
  Dead.prototype.send = () => {
    throw new Error('not open');
  };
  Dead.prototype.close = () => {};
  window.WebSocket = Dead;
}

test('long-polling: subscription, CometQL insert, web_pipe_send, private message, count', { timeout: 90_000 }, async () => {
  const pipe = uniq('web_lp_');
  const id = uniqId();
  const key = uniq('key');
  await ql(`INSERT INTO users_auth (id, hash) VALUES (${id}, ${str(key)})`);
  const a = await openClient(await ctx.make(), {
    name: 'no-ws',
    init: noWebSocket,
    subs: [pipe, '#' + pipe, 'msg'],
    start: { user_id: id, user_key: key },
  });
  const b = await openClient(await ctx.make(), { name: 'dead-ws', origin: other.origin, init: deadWebSocket, subs: [pipe] });
  await waitConnected(a);
  await waitConnected(b, 20_000); // two failed WebSocket attempts first
  assert.equal(await a.evaluate(() => cometApi.getTransport()), 'lp');
  assert.equal(await b.evaluate(() => cometApi.getTransport()), 'lp');
  assert.equal(await a.evaluate(() => cometApi.isAuthorized()), true);
  await waitSubscribers(pipe, 2);

  // CometQL publishes, in order and each once.
  for (let n = 1; n <= 5; n++) {
    await ql(`INSERT INTO pipes_messages (name, event, message) VALUES (${str(pipe)}, 'q', '{"n":${n},"s":"it''s"}')`);
  }
  for (const p of [a, b]) {
    await waitEvents(p, pipe, 5, { 'info.event': 'q' });
    const got = (await events(p, pipe)).filter((e) => e.info.event === 'q');
    assert.deepEqual(got.map((e) => e.data.n), [1, 2, 3, 4, 5]);
    assert.equal(got[0].data.s, "it's");
  }

  // Browser publish over long-polling, with the delivery report.
  await a.evaluate((p) => cometApi.web_pipe_send(p, 'chat', { text: 'over long-polling' }), pipe);
  const [e] = await waitEvents(b, pipe, 1, { 'info.event': 'chat' });
  assert.deepEqual(e.data, { text: 'over long-polling' });
  assert.equal(e.info.user_id, id);
  const [rep] = await waitEvents(a, '#' + pipe);
  assert.equal(rep.data.number_messages, 1);
  await b.evaluate((p) => cometApi.web_pipe_send(p, 'back', 'from b'), pipe);
  const [back] = await waitEvents(a, pipe, 1, { 'info.event': 'back' });
  assert.equal(back.data, 'from b');

  // A private message and a one-shot request.
  await ql(`INSERT INTO users_messages (id, event, message) VALUES (${id}, 'pm', 'private over lp')`);
  const [pm] = await waitEvents(a, 'msg', 1, { 'info.event': 'pm' });
  assert.equal(pm.data, 'private over lp');
  assert.equal((await ask(b, 'count_users_in_pipe', pipe)).data.user_in_pipe, 2);
});
