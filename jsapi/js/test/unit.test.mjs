// Unit tests of the browser client in a fake browser (see fakebrowser.mjs).
// Run: cd jsapi/js && npm test   (or: node --test test/unit.test.mjs)
import test from 'node:test';
import assert from 'node:assert/strict';
import { Browser } from './fakebrowser.mjs';

const INFO_OK = { authorized: true, data: 'KEY', event: 'serverInfo', message_send_time: 1, pipe: 'sys', server: 'cometql test' };
const INFO_ANON = { authorized: false, data: '', event: 'serverInfo', message_send_time: 1, pipe: 'sys', server: 'cometql test' };

function pipeMsg(pipe, event, data, extra = {}) {
  return { data: typeof data === 'string' ? data : JSON.stringify(data), event, message_send_time: 1, pipe, user_id: 0, ...extra };
}

// alone returns a tab that holds its own connection (no other tabs), connected.
function alone(opt = {}, { open = true, info = INFO_OK, tabOpts = {} } = {}) {
  const b = new Browser();
  const t = b.tab(tabOpts);
  t.api.start({ dev_id: 3, user_id: 7, user_key: 'KEY', shareTabs: false, ...opt });
  b.clock.advance(0);
  const ws = b.lastSocket();
  if (open && ws) {
    ws.serverOpen();
    if (info) ws.serverSend(info);
  }
  return { b, t, api: t.api, ws };
}

// sentAfterSync advances the clock past the subscription debounce.
function sync(b) {
  b.clock.advance(50);
}

test('pure helpers', async (t) => {
  const { api } = alone({}, { open: false });
  const h = api._cometql;

  await t.test('splitName splits on exactly one dot', () => {
    assert.deepEqual({ ...h.splitName('web_a.ev') }, { pipe: 'web_a', event: 'ev' });
    assert.deepEqual({ ...h.splitName('web_a') }, { pipe: 'web_a', event: null });
    assert.deepEqual({ ...h.splitName('a.b.c') }, { pipe: 'a.b.c', event: null });
    assert.deepEqual({ ...h.splitName('web_a.') }, { pipe: 'web_a.', event: null });
    assert.deepEqual({ ...h.splitName('.ev') }, { pipe: '.ev', event: null });
  });

  await t.test('parseFrames splits on newlines and drops bad lines', () => {
    const text = '{"a":1}\n\n{"b":"x"}\nnot json\n  {"c":[1]}  \n7\n';
    const got = Array.from(h.parseFrames(text), (o) => JSON.stringify(o));
    assert.deepEqual(got, ['{"a":1}', '{"b":"x"}', '{"c":[1]}']);
  });

  await t.test("parseFrames rewrites backslash-apostrophe like the original", () => {
    // \' is not valid JSON; the original rewrote it to ' before parsing.
    assert.equal(h.parseFrames('{"data":"it\\\'s"}')[0].data, "it's");
    // a frame whose text holds an escaped backslash before an apostrophe
    // becomes invalid and is dropped, which is why the server sends \u0027.
    assert.equal(h.parseFrames('{"data":"a\\\\\'b"}').length, 0);
    assert.equal(h.parseFrames('{"data":"a\\u0027b"}')[0].data, "a'b");
  });

  await t.test('parseData parses JSON strings only', () => {
    assert.deepEqual({ ...h.parseData('{"x":1}') }, { x: 1 });
    assert.equal(h.parseData('hello'), 'hello');
    assert.equal(h.parseData('42'), 42);
    assert.equal(h.parseData('"s"'), 's');
    assert.equal(h.parseData(''), '');
    const obj = { user_id: 1 };
    assert.equal(h.parseData(obj), obj);
    assert.equal(h.parseData('{"x":"it\\\'s"}').x, "it's");
  });

  await t.test('backoff is exponential, jittered and capped at 30 s', () => {
    let prevMax = 0;
    for (let n = 0; n < 40; n++) {
      const lo = h.backoff(n, 0);
      const hi = h.backoff(n, 1);
      const step = Math.min(30000, 1000 * 2 ** n);
      assert.equal(lo, step / 2, `attempt ${n} low`);
      assert.equal(hi, step, `attempt ${n} high`);
      assert.ok(hi >= prevMax);
      prevMax = hi;
      for (let i = 0; i < 20; i++) {
        const d = h.backoff(n);
        assert.ok(d >= step / 2 && d <= step && d <= 30000, `attempt ${n}: ${d}`);
      }
    }
    assert.equal(h.backoff(1000, 1), 30000);
  });
});

test('globals and initial state', () => {
  const b = new Browser();
  const t = b.tab();
  assert.equal(t.win.CometServer(), t.win.cometApi);
  assert.equal(t.win.cometServerApi(), t.win.cometApi);
  assert.equal(t.api.isAuthorized(), undefined);
  assert.equal(t.api.isMaster(), undefined);
  assert.equal(t.api.version, '4.08');
  assert.equal(typeof t.api.onAuthFalill, 'function');
  assert.equal(t.api.onAuthFail, t.api.onAuthFalill);
});

test('WebSocket URL', async (t) => {
  await t.test('path parameters, sesion with one s, default node = page host', () => {
    const { ws, api } = alone({}, { open: false });
    const uuid = api.getUUID();
    assert.match(uuid, /^[A-Za-z0-9_-]{32}$/);
    assert.equal(ws.url, `ws://example.test:8087/ws/sesion=KEY&myid=7&devid=3&v=4.08&uuid=${uuid}&api=js`);
  });
  await t.test('node with a path prefix, wss', () => {
    const { ws } = alone({ node: 'comet.example:443/comet-server/', wss: true }, { open: false });
    assert.match(ws.url, /^wss:\/\/comet\.example:443\/comet-server\/ws\/sesion=KEY&myid=7&devid=3&v=4\.08&uuid=[A-Za-z0-9_-]{32}&api=js$/);
  });
  await t.test('https page defaults to wss; anonymous defaults', () => {
    const b = new Browser();
    const tab = b.tab({ protocol: 'https:', host: 'site.example' });
    tab.api.start({ shareTabs: false });
    b.clock.advance(0);
    assert.match(b.lastSocket().url, /^wss:\/\/site\.example\/ws\/sesion=&myid=0&devid=0&v=4\.08&uuid=/);
  });
  await t.test('nodes array, roundrobin picks by user id', () => {
    const { ws } = alone({ nodes: ['n0:1', 'n1:1', 'n2:1'], roundrobin: true, user_id: 5 }, { open: false });
    assert.match(ws.url, /^ws:\/\/n2:1\/ws\//);
  });
  await t.test('user keys keep = + / raw, other characters are encoded', () => {
    const { ws } = alone({ user_key: 'ab+/c==' }, { open: false });
    assert.match(ws.url, /sesion=ab\+\/c==&/);
    const r = alone({ user_key: 'a b&c' }, { open: false });
    assert.match(r.ws.url, /sesion=a%20b%26c&/);
  });
});

test('uuid is kept in localStorage and shared by tabs', () => {
  const b = new Browser();
  const u1 = b.tab().api.getUUID();
  const u2 = b.tab().api.getUUID();
  assert.equal(u1, u2);
  assert.equal(b.storage.getItem('comet_server_uuid'), u1);
  const b2 = new Browser();
  b2.storage.broken = true;
  const tab = b2.tab();
  const u3 = tab.api.getUUID();
  assert.match(u3, /^[A-Za-z0-9_-]{32}$/);
  assert.equal(tab.api.getUUID(), u3, 'memory fallback is stable');
});

test('subscription list: complete list, reduced on unsubscription', () => {
  const { b, api, ws } = alone();
  const id1 = api.subscription('web_a', () => {});
  api.subscription('web_a.ev', () => {});
  api.subscription('msg', () => {});
  api.subscription('msg.ev', () => {});
  api.subscription('#web_a', () => {});
  api.subscription('', () => {});
  api.subscription(() => {});
  sync(b);
  assert.deepEqual(ws.sent, ['subscription\nweb_a']);
  const id2 = api.subscription('b_pipe', () => {});
  api.subscription('c_pipe.x', () => {});
  sync(b);
  assert.equal(ws.sent.at(-1), 'subscription\nweb_a\nb_pipe\nc_pipe');
  assert.equal(api.unsubscription(id2), true);
  assert.equal(api.unsubscription(id2), false);
  sync(b);
  assert.equal(ws.sent.at(-1), 'subscription\nweb_a\nc_pipe');
  // web_a is still needed by web_a.ev
  api.unsubscription(id1);
  sync(b);
  assert.equal(ws.sent.at(-1), 'subscription\nweb_a\nc_pipe');
  api.unsubscriptionAll();
  sync(b);
  assert.equal(ws.sent.at(-1), 'subscription');
  assert.equal(ws.sent.length, 4);
});

test('names shorter than 2 characters are refused; invalid pipes are not sent', () => {
  const { b, api, ws, t } = alone();
  assert.equal(api.subscription('a', () => {}), false);
  assert.equal(api.subscription('#', () => {}), false);
  assert.equal(typeof api.subscription('a.b.c', () => {}), 'string');
  sync(b);
  assert.deepEqual(ws.sent, []);
  assert.ok(t.errors.some((e) => /invalid pipe name/.test(e)));
});

test('subscriptions made before start are sent once connected', () => {
  const b = new Browser();
  const t = b.tab();
  t.api.subscription('web_early', () => {});
  t.api.web_pipe_send('web_early', 'ev', { a: 1 });
  t.api.start({ dev_id: 1, shareTabs: false });
  b.clock.advance(0);
  const ws = b.lastSocket();
  ws.serverOpen();
  assert.deepEqual(ws.sent, ['subscription\nweb_early', 'web_pipe2\nweb_early\nev\n*\n{"a":1}']);
});

test('routing', async (t) => {
  const { b, api, ws } = alone();
  const got = {};
  const rec = (name) => (e) => (got[name] = got[name] || []).push(e);
  for (const n of ['web_a', 'web_a.ev', 'web_a.other', 'msg', 'msg.ev', '#web_a', '', 'sys']) api.subscription(n, rec(n));
  api.subscription(rec('fn'));
  sync(b);
  const clear = () => Object.keys(got).forEach((k) => delete got[k]);
  const names = () => Object.keys(got).sort();

  await t.test('serverInfo sets authorization and is not delivered', () => {
    assert.equal(api.isAuthorized(), true);
    assert.deepEqual(names(), []);
  });

  await t.test('pipe and pipe.event and all', () => {
    ws.serverSend(pipeMsg('web_a', 'ev', { x: 1 }, { user_id: 9 }));
    assert.deepEqual(names(), ['', 'fn', 'web_a', 'web_a.ev']);
    const e = got.web_a[0];
    assert.deepEqual(JSON.parse(JSON.stringify(e)), {
      data: { x: 1 },
      server_info: { user_id: 9, pipe: 'web_a', event: 'ev', history: false },
    });
    assert.equal(got['web_a.ev'][0], e);
    clear();
  });

  await t.test('private messages go to msg and msg.event', () => {
    ws.serverSend({ data: 'hello', event: 'ev', message_send_time: 1, pipe: 'msg' });
    assert.deepEqual(names(), ['', 'fn', 'msg', 'msg.ev']);
    assert.equal(got.msg[0].data, 'hello');
    assert.equal(got.msg[0].server_info.user_id, 0);
    clear();
  });

  await t.test('delivery reports go to #pipe', () => {
    ws.serverSend({ data: { message: 'm', number_messages: 2 }, event: 'answer', message_send_time: 1, pipe: '_answer_to_web_a' });
    assert.deepEqual(names(), ['', '#web_a', 'fn']);
    assert.equal(got['#web_a'][0].data.number_messages, 2);
    clear();
  });

  await t.test('several frames in one WebSocket message', () => {
    ws.serverSend(JSON.stringify(pipeMsg('web_a', 'ev', 'one')) + '\n' + JSON.stringify(pipeMsg('web_a', 'other', 'two')));
    assert.deepEqual(got.web_a.map((e) => e.data), ['one', 'two']);
    assert.deepEqual(got['web_a.other'].map((e) => e.data), ['two']);
    clear();
  });

  await t.test('sys errors reach sys subscribers', () => {
    ws.serverSend({ data: { error: 'bad pipe', code: '12' }, event: 'error', message_send_time: 1, pipe: 'sys' });
    assert.deepEqual(names(), ['', 'fn', 'sys']);
    clear();
  });

  await t.test('frames without data are ignored; jscode is never run', () => {
    ws.serverSend({ event: 'x', pipe: 'web_a' });
    assert.deepEqual(names(), []);
    ws.serverSend({ data: 'd', event: 'ev', pipe: 'web_a', jscode: 'globalThis.__pwned = 1; window.__pwned = 1' });
    assert.equal(globalThis.__pwned, undefined);
    assert.equal(b.tabs[0].win.__pwned, undefined);
    assert.equal(got.web_a.length, 1);
    clear();
  });

  await t.test('a throwing callback does not stop the others', () => {
    const errs = b.tabs[0].errors.length;
    api.subscription('web_a', () => {
      throw new Error('page bug');
    });
    ws.serverSend(pipeMsg('web_a', 'ev', 'z'));
    assert.deepEqual(names(), ['', 'fn', 'web_a', 'web_a.ev']);
    assert.equal(b.tabs[0].errors.length, errs + 1);
    clear();
  });
});

test('auth callbacks fire on changes only', () => {
  const { api, ws, b } = alone({}, { info: null });
  const seen = [];
  api.onAuthSuccess(() => seen.push('ok'));
  api.onAuthFalill(() => seen.push('fail'));
  assert.equal(api.isAuthorized(), undefined);
  ws.serverSend(INFO_ANON);
  ws.serverSend(INFO_ANON);
  assert.equal(api.isAuthorized(), false);
  ws.serverSend(INFO_OK);
  assert.deepEqual(seen, ['fail', 'ok']);
  assert.equal(api.isAuthorized(), true);
  assert.ok(b);
});

test('commands', () => {
  const { b, api, ws } = alone();
  const calls = [];
  assert.equal(api.web_pipe_send('web_a', 'ev', { t: "it's" }), true);
  assert.equal(ws.sent.at(-1), 'web_pipe2\nweb_a\nev\n*\n{"t":"it\'s"}');
  api.web_pipe_send('web_a.ev2', 'text');
  assert.equal(ws.sent.at(-1), 'web_pipe2\nweb_a\nev2\n*\n"text"');
  api.web_pipe_send('@web_a', 'text');
  assert.equal(ws.sent.at(-1), 'web_pipe2\n@web_a\nundefined\n*\n"text"');
  assert.equal(api.web_pipe_send('news', 'ev', 'x'), false);

  api.get_pipe_log('web_log', (e) => calls.push(e));
  sync(b);
  const log = ws.sent.find((s) => s.startsWith('pipe_log\n'));
  assert.match(log, /^pipe_log\nweb_log\n[A-Za-z0-9_.-]{1,64}\n$/);
  assert.ok(ws.sent.includes('subscription\nweb_log'));
  assert.ok(ws.sent.indexOf('subscription\nweb_log') < ws.sent.indexOf(log), 'pipe list goes before pipe_log');

  api.getTrackPipeUsers('track_room', () => {});
  assert.match(ws.sent.at(-1), /^track_pipe_users\ntrack_room\n[A-Za-z0-9_.-]{1,64}$/);
  assert.equal(api.getTrackPipeUsers('room', () => {}), false);
  api.getUserData(42, () => {});
  assert.match(ws.sent.at(-1), /^user_data\n[A-Za-z0-9_.-]{1,64}\n42$/);
  assert.equal(api.getUserData('4x', () => {}), false);
  api.count_users_in_pipe('web_a', () => {});
  assert.match(ws.sent.at(-1), /^pipe_count\nweb_a\n[A-Za-z0-9_.-]{1,64}\n$/);
});

test('marker replies go only to their one-shot callback', () => {
  const { b, api, ws } = alone();
  const all = [];
  const counts = [];
  api.subscription('', (e) => all.push(e));
  api.subscription('_answer_pipe_count', (e) => all.push(e));
  api.count_users_in_pipe('web_a', (e) => counts.push(e));
  const marker = ws.sent.at(-1).split('\n')[2];
  const reply = { data: { user_in_pipe: 3, 0: 'user_in_pipe', 1: 3 }, event: 'user_in_pipe', marker, message_send_time: 1, pipe: '_answer_pipe_count' };
  ws.serverSend(reply);
  ws.serverSend(reply);
  ws.serverSend({ ...reply, marker: 'someoneElse' });
  assert.equal(counts.length, 1);
  assert.equal(counts[0].data.user_in_pipe, 3);
  assert.equal(counts[0].server_info.marker, marker);
  assert.equal(all.length, 0);
  assert.ok(b);
});

test('reconnection with backoff, pipe list re-sent, recovery by seq', () => {
  const { b, api, ws } = alone();
  const got = [];
  api.subscription('web_h', (e) => got.push([e.data, e.server_info.history]));
  api.subscription('web_plain', () => {});
  sync(b);
  for (const s of [1, 2, 3]) ws.serverSend(pipeMsg('web_h', 'ev', `m${s}`, { seq: s, id: `id${s}` }));
  ws.serverSend(pipeMsg('web_h', 'ev', 'm2', { seq: 2 })); // duplicate
  assert.deepEqual(got.map((g) => g[0]), ['m1', 'm2', 'm3']);

  b.clock.advance(6000); // the connection was stable
  ws.serverDrop();
  assert.equal(api.isConnected(), false);
  const before = b.sockets.length;
  b.clock.advance(499);
  assert.equal(b.sockets.length, before, 'no reconnection before 0.5 s');
  b.clock.advance(501);
  assert.equal(b.sockets.length, before + 1, 'reconnected within 1 s');
  const ws2 = b.lastSocket();
  ws2.serverOpen();
  assert.equal(ws2.sent[0], 'subscription\nweb_h\nweb_plain');
  assert.match(ws2.sent[1], /^pipe_log\nweb_h\n[A-Za-z0-9_.-]+\n3$/);
  assert.match(ws2.sent[2], /^user_data\n[A-Za-z0-9_.-]+\n1$/, 'a request whose reply ends the recovery');
  assert.equal(ws2.sent.length, 3, 'no recovery for pipes without seq');
  ws2.serverSend(INFO_OK);
  // missed 4 and 5 come as history; 3 again must not be delivered twice
  for (const s of [3, 4, 5]) ws2.serverSend(pipeMsg('web_h', 'ev', `m${s}`, { seq: s, history: true }));
  ws2.serverSend(pipeMsg('web_h', 'ev', 'm5', { seq: 5 }));
  ws2.serverSend(pipeMsg('web_h', 'ev', 'm6', { seq: 6 }));
  assert.deepEqual(got, [['m1', false], ['m2', false], ['m3', false], ['m4', false], ['m5', false], ['m6', false]]);
});

// recoveryMarker returns the marker of the request whose reply ends the
// recovery (the last of the commands sent on reconnection).
function recoveryMarker(ws) {
  const cmd = ws.sent.find((s) => s.startsWith('user_data\n'));
  return cmd ? cmd.split('\n')[1] : 'none';
}
const userDataReply = (marker) => ({ data: { user_data: '', user_id: 1 }, event: 'answer', marker, message_send_time: 1, pipe: '_answer' });

test('recovery: live messages that arrive before the replay wait for it; every seq once, in order, in every tab', async () => {
  // Over long-polling "subscription" and "pipe_log ... since" are separate
  // requests: a message published between them arrives live before the
  // replay of the ones missed while disconnected.
  const b = new Browser();
  const [a, c] = startTabs(b, 2);
  await b.flush(1000);
  assert.equal(a.api.isMaster(), true);
  const ws = b.lastSocket();
  ws.serverOpen();
  ws.serverSend(INFO_OK);
  const got = { a: [], c: [] };
  a.api.subscription('web_r', (e) => got.a.push(e.server_info.history ? `${e.data}h` : e.data));
  c.api.subscription('web_r', (e) => got.c.push(e.server_info.history ? `${e.data}h` : e.data));
  await b.flush(100);
  const live = (w, s) => w.serverSend(pipeMsg('web_r', 'e', s, { seq: s }));
  const hist = (w, s) => w.serverSend(pipeMsg('web_r', 'e', s, { seq: s, history: true }));
  for (const s of [1, 2, 3]) live(ws, s);
  await b.flush();

  b.clock.advance(6000);
  ws.serverDrop();
  await b.flush(1000);
  const ws2 = b.lastSocket();
  assert.notEqual(ws2, ws);
  ws2.serverOpen();
  assert.equal(ws2.sent[0], 'subscription\nweb_r');
  assert.match(ws2.sent[1], /^pipe_log\nweb_r\n[A-Za-z0-9_.-]+\n3$/);
  const marker = recoveryMarker(ws2);
  ws2.serverSend(INFO_OK);
  live(ws2, 8); // published after the subscription, before the replay
  live(ws2, 9);
  for (const s of [4, 5, 6, 7, 8]) hist(ws2, s);
  live(ws2, 9); // again: the replay ran while 9 was being published
  ws2.serverSend(userDataReply(marker));
  live(ws2, 10);
  // 11 was this browser's own message (the server does not send it back):
  // outside a recovery a gap is not waited for.
  live(ws2, 12);
  await b.flush();
  // 8 and 9 waited for the replay: nothing lost, nothing twice, in order.
  const want = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12];
  assert.deepEqual(got.a, want, 'the tab holding the connection');
  assert.deepEqual(got.c, want, 'the other tab');
  assert.equal(a.api._cometql.state().lastSeq.web_r, 12);

  // The same race with the first live message right after the last one
  // delivered: it is delivered at once, the replay only repeats it.
  ws2.serverDrop();
  await b.flush(2100);
  const ws3 = b.lastSocket();
  assert.notEqual(ws3, ws2);
  ws3.serverOpen();
  assert.match(ws3.sent[1], /^pipe_log\nweb_r\n[A-Za-z0-9_.-]+\n12$/);
  ws3.serverSend(INFO_OK);
  live(ws3, 13);
  await b.flush();
  assert.deepEqual(got.a.slice(-1), [13]);
  hist(ws3, 13);
  hist(ws3, 14);
  live(ws3, 14);
  ws3.serverSend(userDataReply(recoveryMarker(ws3)));
  await b.flush();
  assert.deepEqual(got.a, [...want, 13, 14]);
  assert.deepEqual(got.c, got.a);
});

test('recovery: a replay that skips seqs (trimmed history) releases the live messages held after them', () => {
  const { b, api, ws } = alone();
  const got = [];
  api.subscription('web_t', (e) => got.push(e.data));
  sync(b);
  ws.serverSend(pipeMsg('web_t', 'e', 1, { seq: 1 }));
  b.clock.advance(6000);
  ws.serverDrop();
  b.clock.advance(1000);
  const ws2 = b.lastSocket();
  ws2.serverOpen();
  ws2.serverSend(INFO_OK);
  ws2.serverSend(pipeMsg('web_t', 'e', 9, { seq: 9 }));
  ws2.serverSend(pipeMsg('web_t', 'e', 12, { seq: 12 }));
  assert.deepEqual(got, [1]);
  // the history keeps 3 messages: 8, 9, 10 (9 is held already)
  ws2.serverSend(pipeMsg('web_t', 'e', 8, { seq: 8, history: true }));
  ws2.serverSend(pipeMsg('web_t', 'e', 9, { seq: 9, history: true }));
  ws2.serverSend(pipeMsg('web_t', 'e', 10, { seq: 10, history: true }));
  assert.deepEqual(got, [1, 8, 9, 10], '12 waits: 11 may still come');
  ws2.serverSend(pipeMsg('web_t', 'e', 11, { seq: 11 }));
  assert.deepEqual(got, [1, 8, 9, 10, 11, 12]);
});

test('recovery: without its end, held messages are delivered after a while without progress', () => {
  const { b, api, ws } = alone();
  const got = [];
  api.subscription('web_t', (e) => got.push(e.data));
  sync(b);
  ws.serverSend(pipeMsg('web_t', 'e', 1, { seq: 1 }));
  b.clock.advance(6000);
  ws.serverDrop();
  b.clock.advance(1000);
  const ws2 = b.lastSocket();
  ws2.serverOpen();
  ws2.serverSend(INFO_OK);
  ws2.serverSend(pipeMsg('web_t', 'e', 5, { seq: 5 }));
  ws2.serverSend(pipeMsg('web_t', 'e', 4, { seq: 4 }));
  b.clock.advance(10000);
  ws2.serverSend(pipeMsg('web_t', 'e', 2, { seq: 2, history: true })); // progress: the replay is slow
  b.clock.advance(10000);
  assert.deepEqual(got, [1, 2]);
  b.clock.advance(6000);
  assert.deepEqual(got, [1, 2, 4, 5], 'released in seq order');
  ws2.serverSend(pipeMsg('web_t', 'e', 3, { seq: 3, history: true }));
  ws2.serverSend(pipeMsg('web_t', 'e', 7, { seq: 7 }));
  assert.deepEqual(got, [1, 2, 4, 5, 7], 'no recovery in flight any more');
});

test('backoff grows on repeated failures and is capped', () => {
  const b = new Browser();
  const t = b.tab({ noWebSocket: false });
  const scripts = [];
  t.win.document = { head: { appendChild: (s) => scripts.push(s) }, createElement: () => ({}) };
  t.api.start({ shareTabs: false });
  b.clock.advance(0);
  // WebSocket, long-polling and JSONP all fail, so attempts alternate forever
  const times = [];
  let last = b.sockets.length + b.xhrs.length;
  const t0 = b.clock.t;
  for (let i = 0; i < 400000 && times.length < 14; i += 100) {
    for (const ws of b.sockets) if (ws.readyState === 0 && ws.onclose) ws.serverDrop();
    for (const x of b.xhrs) if (x.readyState !== 4 && !x.aborted) x.respond(0, '');
    for (const s of scripts) if (!s.failed) {
      s.failed = true;
      s.onerror();
    }
    const n = b.sockets.length + b.xhrs.length + scripts.length;
    if (n !== last) {
      times.push(b.clock.t - t0);
      last = n;
    }
    b.clock.advance(100);
  }
  const gaps = times.slice(1).map((x, i) => x - times[i]);
  assert.ok(gaps.length > 10);
  for (const g of gaps) assert.ok(g <= 30100, `gap ${g}`);
  assert.ok(gaps.at(-1) >= 15000, `late gaps reach the cap: ${gaps}`);
  assert.ok(times[0] <= 1100, `first retry within 1 s: ${times[0]}`);
  assert.ok(gaps[0] <= 2100, `second retry within 2 s: ${gaps}`);
});

test('a handshake error delays the next attempt to the cap', () => {
  const { b, ws } = alone({}, { info: null });
  ws.serverSend({ data: { error: 'Error code 418(Invalid request)', error_code: 418 }, event: 'error', pipe: 'sys', message_send_time: 1 });
  ws.serverDrop();
  const n = b.sockets.length;
  b.clock.advance(29000);
  assert.equal(b.sockets.length, n);
  b.clock.advance(1100);
  assert.equal(b.sockets.length, n + 1);
});

test('explicit get_pipe_log replays history once', () => {
  const { b, api, ws } = alone();
  const got = [];
  api.subscription('web_h', (e) => got.push([e.data, e.server_info.history]));
  sync(b);
  for (const s of [1, 2]) ws.serverSend(pipeMsg('web_h', 'ev', `m${s}`, { seq: s }));
  api.get_pipe_log('web_h');
  for (const s of [1, 2]) ws.serverSend(pipeMsg('web_h', 'ev', `m${s}`, { seq: s, history: true }));
  for (const s of [1, 2]) ws.serverSend(pipeMsg('web_h', 'ev', `m${s}`, { seq: s, history: true }));
  ws.serverSend(pipeMsg('web_h', 'ev', 'm3', { seq: 3 }));
  assert.deepEqual(got, [['m1', false], ['m2', false], ['m1', true], ['m2', true], ['m3', false]]);
  // after the window, a stray replay is not delivered again
  b.clock.advance(31000);
  ws.serverSend(pipeMsg('web_h', 'ev', 'm1', { seq: 1, history: true }));
  assert.equal(got.length, 5);
});

test('history of a pipe never seen is delivered only to the tab that asked', () => {
  const { b, api, ws } = alone();
  const got = [];
  api.get_pipe_log('web_new', (e) => got.push(e.data));
  sync(b);
  for (const s of [10, 11]) ws.serverSend(pipeMsg('web_new', 'ev', `h${s}`, { seq: s, history: true }));
  assert.deepEqual(got, ['h10', 'h11']);
  // the same tab, without a window: history of an unknown pipe is not live
  api._cometql.handleFrame(pipeMsg('web_other', 'ev', 'x', { seq: 1, history: true }));
  api.subscription('web_other', (e) => got.push(e.data));
  api._cometql.handleFrame(pipeMsg('web_other', 'ev', 'y', { seq: 1, history: true }));
  assert.deepEqual(got, ['h10', 'h11']);
  assert.ok(b);
});

test('long-polling fallback after two WebSocket failures', async (t) => {
  const b = new Browser();
  const tab = b.tab();
  const api = tab.api;
  const got = [];
  api.subscription('web_lp', (e) => got.push(e.data));
  api.start({ dev_id: 3, user_id: 7, user_key: 'K+/=', shareTabs: false });
  b.clock.advance(0);
  b.lastSocket().serverDrop();
  b.clock.advance(1000);
  b.lastSocket().serverDrop();
  assert.equal(b.xhrs.length, 0);
  b.clock.advance(2000);
  const open = b.xhrs[0];
  await t.test('open', () => {
    assert.equal(open.method, 'GET');
    const uuid = api.getUUID();
    assert.equal(open.url, `http://example.test:8087/lp/open?sesion=K%2B%2F%3D&myid=7&devid=3&v=4.08&uuid=${uuid}&api=js`);
  });
  open.respond(200, { sid: 'S1', next: 0 });
  const send1 = b.xhrs[1];
  const poll1 = b.xhrs[2];
  await t.test('send and poll', () => {
    assert.equal(send1.method, 'POST');
    assert.equal(send1.url, 'http://example.test:8087/lp/send?sid=S1');
    assert.equal(send1.body, 'subscription\nweb_lp');
    assert.equal(poll1.url, 'http://example.test:8087/lp/poll?sid=S1&ack=0');
    assert.equal(api.getTransport(), 'lp');
    assert.equal(api.isConnected(), true);
  });
  await t.test('commands are sent one at a time, in order', () => {
    api.web_pipe_send('web_lp', 'e', 1);
    api.web_pipe_send('web_lp', 'e', 2);
    assert.equal(b.xhrs.length, 3, 'second command waits for the first');
    send1.respond(200, { ok: true });
    assert.equal(b.xhrs[3].body, 'web_pipe2\nweb_lp\ne\n*\n1');
    b.xhrs[3].respond(200, { ok: true });
    assert.equal(b.xhrs[4].body, 'web_pipe2\nweb_lp\ne\n*\n2');
    b.xhrs[4].respond(200, { ok: true });
  });
  await t.test('frames and ack', () => {
    poll1.respond(200, { sid: 'S1', next: 3, frames: [INFO_OK, pipeMsg('web_lp', 'e', 'a', { seq: 1 }), pipeMsg('web_lp', 'e', 'b', { seq: 2 })] });
    assert.deepEqual(got, ['a', 'b']);
    assert.equal(api.isAuthorized(), true);
    const poll2 = b.xhrs.at(-1);
    assert.equal(poll2.url, 'http://example.test:8087/lp/poll?sid=S1&ack=3');
    poll2.respond(200, { sid: 'S1', next: 3, frames: [] });
    assert.equal(b.xhrs.at(-1).url, 'http://example.test:8087/lp/poll?sid=S1&ack=3');
  });
  await t.test('a failed poll is retried with the same ack', () => {
    b.xhrs.at(-1).respond(0, '');
    b.clock.advance(1000);
    assert.equal(b.xhrs.at(-1).url, 'http://example.test:8087/lp/poll?sid=S1&ack=3');
  });
  await t.test('unknown session: a new one, pipe list and recovery', () => {
    b.xhrs.at(-1).respond(404, { error: 'unknown session', code: 404 });
    b.clock.advance(1000);
    const reopen = b.xhrs.at(-1);
    assert.match(reopen.url, /\/lp\/open\?/);
    reopen.respond(200, { sid: 'S2', next: 0 });
    const sends = b.xhrs.filter((x) => x.method === 'POST' && x.url.endsWith('sid=S2'));
    assert.equal(sends.length, 1);
    assert.equal(sends[0].body, 'subscription\nweb_lp');
    sends[0].respond(200, { ok: true });
    const rec = b.xhrs.filter((x) => x.method === 'POST' && x.url.endsWith('sid=S2')).at(-1);
    assert.match(rec.body, /^pipe_log\nweb_lp\n[A-Za-z0-9_.-]+\n2$/);
  });
  await t.test('back to WebSocket when a probe works', () => {
    const n = b.sockets.length;
    for (let i = 0; i < 400 && b.sockets.length === n; i++) b.clock.advance(100);
    assert.ok(b.clock.t, 'a probe within 40 s');
    assert.equal(b.sockets.length, n + 1, 'a WebSocket probe');
    const probe = b.lastSocket();
    probe.serverOpen();
    assert.deepEqual(probe.sent, [], 'nothing sent before the probe is confirmed');
    probe.serverSend(INFO_OK);
    assert.equal(api.getTransport(), 'ws');
    assert.equal(probe.sent[0], 'subscription\nweb_lp');
    assert.match(probe.sent[1], /^pipe_log\nweb_lp\n[A-Za-z0-9_.-]+\n2$/);
    const close = b.xhrs.find((x) => x.url === 'http://example.test:8087/lp/close?sid=S2');
    assert.ok(close, 'the long-poll session is closed');
    assert.equal(close.method, 'POST');
    probe.serverSend(pipeMsg('web_lp', 'e', 'c', { seq: 3 }));
    assert.deepEqual(got, ['a', 'b', 'c']);
  });
});

test('no WebSocket at all: long-polling directly, JSONP without CORS', () => {
  const b = new Browser();
  const tab = b.tab({ noWebSocket: true });
  tab.api.start({ shareTabs: false });
  b.clock.advance(0);
  assert.equal(b.sockets.length, 0);
  assert.match(b.xhrs[0].url, /^http:\/\/example\.test:8087\/lp\/open\?sesion=&myid=0&devid=0&v=4\.08&uuid=/);
  // CORS failures (status 0) make the client try JSONP next time
  b.xhrs[0].respond(0, '');
  const scripts = [];
  tab.win.document = {
    head: { appendChild: (s) => scripts.push(s) },
    createElement: () => ({}),
  };
  b.clock.advance(2000);
  assert.equal(scripts.length, 1);
  const m = /^http:\/\/example\.test:8087\/lp\/open\?.*&api=js&callback=(__cometql_jp\w+)$/.exec(scripts[0].src);
  assert.ok(m, scripts[0].src);
  tab.win[m[1]]({ sid: 'J1', next: 0 });
  assert.equal(tab.api.getTransport(), 'lp');
  assert.match(scripts[1].src, /\/lp\/poll\?sid=J1&ack=0&callback=__cometql_jp\w+$/);
});

// ---- several tabs ---------------------------------------------------------

function startTabs(b, n, opt = {}) {
  const tabs = [];
  for (let i = 0; i < n; i++) {
    const t = b.tab();
    t.api.start({ dev_id: 1, user_id: 2, user_key: 'K', ...opt });
    tabs.push(t);
    b.clock.advance(10);
  }
  return tabs;
}

test('tabs share one connection (heartbeat election)', async (t) => {
  const b = new Browser();
  const [a, bb, c] = startTabs(b, 3);
  await b.flush(1000);
  await t.test('one leader, one socket', () => {
    assert.deepEqual([a, bb, c].map((x) => x.api.isMaster()), [true, false, false]);
    assert.equal(b.openSockets().length, 1);
  });
  const ws = b.lastSocket();
  ws.serverOpen();
  ws.serverSend(INFO_OK);
  await b.flush(100);
  const gotB = [];
  const gotC = [];
  bb.api.subscription('web_b', (e) => gotB.push(e.data));
  c.api.subscription('web_c.ev', (e) => gotC.push(e.data));
  a.api.subscription('web_a', () => {});
  await b.flush(100);
  await t.test('the leader sends the union of all tabs', () => {
    assert.equal(ws.sent.at(-1), 'subscription\nweb_a\nweb_b\nweb_c');
    assert.equal(bb.api.isAuthorized(), true);
    assert.equal(c.api.isConnected(), true);
  });
  await t.test('frames reach the followers', async () => {
    ws.serverSend(pipeMsg('web_b', 'x', 'to b'));
    ws.serverSend(pipeMsg('web_c', 'ev', 'to c'));
    await b.flush();
    assert.deepEqual(gotB, ['to b']);
    assert.deepEqual(gotC, ['to c']);
  });
  await t.test('followers send commands through the leader; replies come back', async () => {
    bb.api.web_pipe_send('web_b', 'e', 'hi');
    const counts = [];
    c.api.count_users_in_pipe('web_c', (e) => counts.push(e.data.user_in_pipe));
    await b.flush();
    assert.equal(ws.sent.at(-2), 'web_pipe2\nweb_b\ne\n*\n"hi"');
    const marker = ws.sent.at(-1).split('\n')[2];
    ws.serverSend({ data: { user_in_pipe: 5 }, event: 'user_in_pipe', marker, pipe: '_answer_pipe_count', message_send_time: 1 });
    await b.flush();
    assert.deepEqual(counts, [5]);
  });
  await t.test('a follower leaving drops its pipes', async () => {
    c.close();
    await b.flush(100);
    assert.equal(ws.sent.at(-1), 'subscription\nweb_a\nweb_b');
  });
  await t.test('the leader closing: another tab takes over within seconds', async () => {
    ws.serverSend(pipeMsg('web_b', 'x', 'seq 7', { seq: 7 }));
    await b.flush();
    a.close();
    await b.flush(2000);
    assert.equal(bb.api.isMaster(), true);
    const ws2 = b.lastSocket();
    assert.notEqual(ws2, ws);
    assert.equal(ws2.tab, bb);
    ws2.serverOpen();
    assert.equal(ws2.sent[0], 'subscription\nweb_b');
    assert.match(ws2.sent[1], /^pipe_log\nweb_b\n[A-Za-z0-9_.-]+\n7$/);
  });
});

test("web_pipe_send reaches the browser's other tabs once the server reported it, never the sender", async () => {
  // The server delivers a browser's message to every connection but the
  // sender's (SPEC 3.4), and the tabs share one connection.
  const b = new Browser();
  const [a, bb, c] = startTabs(b, 3);
  await b.flush(1000);
  assert.equal(a.api.isMaster(), true);
  const ws = b.lastSocket();
  ws.serverOpen();
  ws.serverSend(INFO_OK);
  const got = { a: [], bb: [], c: [], reports: [] };
  const rec = (k) => (e) => got[k].push({ data: e.data, ...e.server_info });
  a.api.subscription('web_t', rec('a'));
  bb.api.subscription('web_t', rec('bb'));
  c.api.subscription('web_t.ev', rec('c'));
  bb.api.subscription('#web_t', rec('reports'));
  await b.flush(100);
  const report = (message, n = 2) => ({ data: { message, number_messages: n }, event: 'answer', message_send_time: 5, pipe: '_answer_to_web_t' });
  const clear = () => Object.values(got).forEach((l) => l.splice(0));

  a.api.web_pipe_send('web_t', 'ev', { x: 1 });
  await b.flush();
  assert.equal(ws.sent.at(-1), 'web_pipe2\nweb_t\nev\n*\n{"x":1}');
  assert.deepEqual(got.bb, [], 'nothing before the server accepted it');
  ws.serverSend(report('{"x":1}'));
  await b.flush();
  const want = { data: { x: 1 }, user_id: 2, pipe: 'web_t', event: 'ev', history: false };
  assert.deepEqual(JSON.parse(JSON.stringify(got.bb)), [want]);
  assert.deepEqual(JSON.parse(JSON.stringify(got.c)), [want], 'pipe.event subscribers too');
  assert.deepEqual(got.a, [], 'not back to the sender');
  assert.equal(got.reports.length, 1);
  clear();

  // From a tab that does not hold the connection.
  bb.api.web_pipe_send('web_t.ev', 'hi');
  await b.flush();
  ws.serverSend(report('"hi"'));
  await b.flush();
  assert.deepEqual(got.a.map((e) => [e.data, e.user_id]), [['hi', 2]]);
  assert.deepEqual(got.c.map((e) => e.data), ['hi']);
  assert.deepEqual(got.bb, []);
  clear();

  // "@pipe" publishes anonymously; the report names the pipe without "@".
  c.api.web_pipe_send('@web_t', 'ev', 'anon');
  await b.flush();
  ws.serverSend(report('"anon"'));
  await b.flush();
  assert.deepEqual(got.a.map((e) => [e.data, e.user_id]), [['anon', 0]]);
  assert.deepEqual(got.bb.map((e) => [e.data, e.user_id]), [['anon', 0]]);
  assert.deepEqual(got.c, []);
  clear();

  // A command the server refused has no report: it is never delivered, and
  // does not shift the next report onto the wrong message.
  a.api.web_pipe_send('web_t', 'ev', 'refused');
  bb.api.web_pipe_send('web_t', 'ev', 'accepted');
  await b.flush();
  ws.serverSend({ data: { error: 'rate limited', code: 'rate_limited' }, event: 'error', message_send_time: 5, pipe: 'sys' });
  ws.serverSend(report('"accepted"'));
  await b.flush();
  assert.deepEqual(got.bb, [], 'sent by bb');
  assert.deepEqual(got.a.map((e) => e.data), ['accepted']);
  assert.deepEqual(got.c.map((e) => e.data), ['accepted']);
  assert.equal(a.api._cometql.state().cx.pubs.length, 0);
  clear();

  // A report nobody here is waiting for delivers nothing.
  ws.serverSend(report('"stranger"'));
  await b.flush();
  assert.deepEqual([got.a, got.bb, got.c], [[], [], []]);

  // When no tab subscribes to the pipe, no copy is made.
  a.api.web_pipe_send('web_none', 'ev', 'x');
  await b.flush();
  const all = [];
  bb.api.subscription('', (e) => all.push(e.server_info.pipe));
  await b.flush();
  ws.serverSend({ ...report('"x"'), pipe: '_answer_to_web_none' });
  await b.flush();
  assert.deepEqual(all, ['_answer_to_web_none']);
});

test('a crashed leader is replaced (heartbeat timeout)', async () => {
  const b = new Browser();
  const [a, bb] = startTabs(b, 2);
  await b.flush(1000);
  assert.equal(a.api.isMaster(), true);
  a.kill();
  await b.flush(3000);
  assert.equal(bb.api.isMaster(), false);
  await b.flush(5000);
  assert.equal(bb.api.isMaster(), true);
  assert.equal(b.openSockets(bb).length, 1);
});

test('two leaders resolve to one', async () => {
  const b = new Browser();
  const [a, bb] = startTabs(b, 2);
  await b.flush(1000);
  // force a split: the follower believes it leads
  bb.api._cometql.state().tab.leader = undefined;
  bb.api._cometql.state().tab.leaderAt = 0;
  bb.api._cometql.state().tab.candidate = null;
  await b.flush(3000);
  const masters = [a, bb].filter((x) => x.api.isMaster() === true);
  assert.equal(masters.length, 1);
  assert.equal(b.openSockets().length, 1);
});

test('tabs share one connection over localStorage when BroadcastChannel is missing', async () => {
  const b = new Browser();
  const tabs = [];
  for (let i = 0; i < 2; i++) {
    const t = b.tab({ noBroadcastChannel: true });
    t.api.start({ dev_id: 1 });
    tabs.push(t);
    b.clock.advance(10);
  }
  await b.flush(1000);
  assert.deepEqual(tabs.map((x) => x.api.isMaster()), [true, false]);
  const ws = b.lastSocket();
  ws.serverOpen();
  const got = [];
  tabs[1].api.subscription('web_x', (e) => got.push(e.data));
  await b.flush(100);
  assert.equal(ws.sent.at(-1), 'subscription\nweb_x');
  ws.serverSend(pipeMsg('web_x', 'e', 'via storage'));
  await b.flush();
  assert.deepEqual(got, ['via storage']);
});

test('tabs with Web Locks: instant election and takeover', async () => {
  const b = new Browser({ locks: true });
  const [a, bb] = startTabs(b, 2);
  await b.flush(10);
  assert.equal(a.api.isMaster(), true);
  assert.equal(bb.api.isMaster(), false);
  await b.flush(500);
  assert.equal(b.openSockets().length, 1);
  const got = [];
  bb.api.subscription('web_l', (e) => got.push(e.data));
  await b.flush(100);
  const ws = b.lastSocket();
  ws.serverOpen();
  assert.equal(ws.sent.at(-1), 'subscription\nweb_l');
  ws.serverSend(pipeMsg('web_l', 'e', 'one'));
  await b.flush();
  assert.deepEqual(got, ['one']);
  a.close();
  await b.flush(10);
  assert.equal(bb.api.isMaster(), true);
  await b.flush(500);
  const ws2 = b.lastSocket();
  assert.equal(ws2.tab, bb);
  ws2.serverOpen();
  assert.equal(ws2.sent[0], 'subscription\nweb_l');
});

test('stop in one tab leaves the others connected', async () => {
  const b = new Browser();
  const [a, bb] = startTabs(b, 2);
  await b.flush(1000);
  bb.api.stop();
  await b.flush(100);
  assert.equal(a.api.isMaster(), true);
  assert.equal(bb.api.isMaster(), false);
  assert.equal(b.openSockets().length, 1);
  a.api.stop();
  await b.flush(100);
  assert.equal(b.openSockets().length, 0);
  await b.flush(10000);
  assert.equal(b.openSockets().length, 0, 'stopped tabs stay quiet');
});

test('restart with new credentials reconnects', async () => {
  const { b, api, ws } = alone();
  api.restart({ user_key: 'NEW' });
  await b.flush(10);
  assert.equal(ws.readyState, 3);
  assert.match(b.lastSocket().url, /sesion=NEW&myid=7&/);
});

test('start twice without changes does not reconnect', async () => {
  const { b, api, ws } = alone();
  api.start({ dev_id: 3, user_id: 7, user_key: 'KEY' });
  await b.flush(2000);
  assert.equal(ws.readyState, 1);
  api.start({ user_key: 'OTHER' });
  await b.flush(10);
  assert.equal(ws.readyState, 3);
  assert.match(b.lastSocket().url, /sesion=OTHER&/);
});

test('the leader adopts the key of the tab that started last', async () => {
  const b = new Browser();
  const a = b.tab();
  a.api.start({ dev_id: 1, user_id: 2, user_key: 'OLD' });
  await b.flush(1000);
  const c = b.tab();
  c.api.start({ dev_id: 1, user_id: 2, user_key: 'FRESH' });
  await b.flush(1000);
  assert.equal(c.api.isMaster(), false);
  const ws = b.lastSocket();
  assert.match(ws.url, /sesion=OLD&/);
  ws.serverOpen();
  ws.serverDrop();
  await b.flush(1100);
  assert.match(b.lastSocket().url, /sesion=FRESH&/);
  assert.equal(b.storage.m.size, 1, 'only the uuid stays in localStorage');
});

test('the minified copy is up to date and works', async (t) => {
  const fs = await import('node:fs');
  const crypto = await import('node:crypto');
  const { SRC_PATH } = await import('./fakebrowser.mjs');
  const minPath = new URL('../../static/CometServerApi.min.js', import.meta.url);
  if (!fs.existsSync(minPath)) {
    t.skip('no CometServerApi.min.js');
    return;
  }
  const src = fs.readFileSync(SRC_PATH, 'utf8');
  const min = fs.readFileSync(minPath, 'utf8');
  const hash = crypto.createHash('sha256').update(src).digest('hex').slice(0, 16);
  assert.ok(min.includes(`sha256:${hash}`), 'CometServerApi.min.js is stale: run `npm run build` in jsapi/js');
  const b = new Browser({ src: min });
  const tab = b.tab();
  const got = [];
  tab.api.subscription('web_m.e', (e) => got.push(e.data));
  tab.api.start({ dev_id: 1, shareTabs: false });
  b.clock.advance(0);
  const ws = b.lastSocket();
  ws.serverOpen();
  ws.serverSend(INFO_ANON);
  ws.serverSend(pipeMsg('web_m', 'e', { ok: 1 }));
  assert.deepEqual(ws.sent, ['subscription\nweb_m']);
  assert.equal(got[0].ok, 1);
  assert.equal(tab.api.isAuthorized(), false);
});

test('pipe names that are Object.prototype keys work', () => {
  const { b, api, ws } = alone();
  const got = [];
  for (const n of ['constructor', '__proto__', 'toString.ev']) api.subscription(n, (e) => got.push(e.data));
  sync(b);
  assert.equal(ws.sent.at(-1), 'subscription\nconstructor\n__proto__\ntoString');
  ws.serverSend(pipeMsg('constructor', 'e', 'a', { seq: 1 }));
  ws.serverSend(pipeMsg('__proto__', 'e', 'b', { seq: 1 }));
  ws.serverSend(pipeMsg('toString', 'ev', 'c'));
  ws.serverSend(pipeMsg('hasOwnProperty', 'ev', 'd'));
  assert.deepEqual(got, ['a', 'b', 'c']);
});

test('a crashed follower is dropped from the pipe list after missed roll calls', async () => {
  const b = new Browser();
  const [a, c] = startTabs(b, 2);
  await b.flush(1000);
  const ws = b.lastSocket();
  ws.serverOpen();
  c.api.subscription('web_gone', () => {});
  await b.flush(100);
  assert.equal(ws.sent.at(-1), 'subscription\nweb_gone');
  await b.flush(5000);
  assert.equal(ws.sent.at(-1), 'subscription\nweb_gone', 'a live follower stays');
  c.kill();
  await b.flush(4000);
  assert.equal(ws.sent.at(-1), 'subscription');
  assert.equal(a.api.isMaster(), true);
});

test("the original's tab signal bus: comet_server_signal(), tabSignal, _tabSignal", async (t) => {
  const b = new Browser();
  const a = b.tab();
  const c = b.tab({ noBroadcastChannel: true });
  const d = b.tab({ noBroadcastChannel: true });
  await t.test('globals', () => {
    assert.equal(typeof a.win._tabSignal, 'function');
    assert.equal(a.win.comet_server_signal(), a.win.tabSignal);
    assert.equal(a.win.tabSignal.getEventKey(), 'tabSignal_storage_emit');
    assert.equal(typeof a.api.tabSignal.connect, 'function');
    assert.notEqual(a.api.tabSignal, a.win.tabSignal);
  });
  await t.test('connect, emit, send_emit (this tab only), disconnect', async () => {
    const got = [];
    const slot = a.win.comet_server_signal().connect('AddToChat', (p, name, other) => got.push([p.text, name, other]));
    a.win.comet_server_signal().connect('mySlot', 'AddToChat', (p) => got.push(['slot', p.text]));
    a.win.comet_server_signal().send_emit('AddToChat', { text: 'hi' });
    await b.flush();
    assert.deepEqual(got, [['hi', 'AddToChat', false], ['slot', 'hi']]);
    assert.equal(a.win.tabSignal.disconnect(slot, 'AddToChat'), true);
    assert.equal(a.win.tabSignal.disconnect(slot, 'AddToChat'), false);
    a.win.tabSignal.emit('AddToChat', { text: 'again' });
    assert.deepEqual(got.at(-1), ['slot', 'again']);
    assert.equal(got.length, 3);
  });
  await t.test('emitAll reaches the other tabs (over localStorage without BroadcastChannel)', async () => {
    const inC = [];
    const inD = [];
    c.win.tabSignal.connect('ping', (p, name, other) => inC.push([p.n, other]));
    d.win.tabSignal.connect('ping', (p, name, other) => inD.push([p.n, other]));
    assert.equal(c.win.tabSignal.emitAll('ping', { n: 1 }), true);
    await b.flush();
    assert.deepEqual(inC, [[1, false]]);
    assert.deepEqual(inD, [[1, true]]);
  });
  await t.test('shared state with ages', () => {
    const s1 = c.win.tabSignal;
    const s2 = d.win.tabSignal;
    assert.equal(s1.setState('who', 'c', 1000), true);
    assert.equal(s2.getState('who'), 'c');
    assert.equal(s2.setState('who', 'd', 1000), false, 'a fresh value of another tab is kept');
    b.clock.advance(1500);
    assert.equal(s2.getState('who', 1000), undefined, 'too old');
    assert.equal(s2.setState('who', 'd', 1000), true);
    assert.equal(s1.getState('who', 1000), 'd');
  });
});

test('send_msg sends a raw command; wss accepts any truthy value', async () => {
  const { api, ws } = alone();
  assert.equal(api.send_msg('user_status\n12'), true);
  assert.equal(ws.sent.at(-1), 'user_status\n12');
  assert.equal(api.send_msg(undefined), false);
  for (const [wss, scheme] of [['1', 'wss'], ['yes', 'wss'], [1, 'wss'], [0, 'ws'], ['false', 'ws'], ['', 'ws']]) {
    const r = alone({ wss }, { open: false });
    assert.equal(r.ws.url.split(':')[0], scheme, `wss: ${JSON.stringify(wss)}`);
  }
});

test('start callbacks run in every tab, also in a tab that joins a connected one', async () => {
  const b = new Browser();
  const a = b.tab();
  const calls = [];
  a.api.start({ dev_id: 1, user_id: 2, user_key: 'K' }, () => calls.push('a'));
  await b.flush(1000);
  const ws = b.lastSocket();
  ws.serverOpen();
  ws.serverSend(INFO_OK);
  await b.flush(100);
  assert.deepEqual(calls, ['a']);
  const c = b.tab();
  c.api.start({ dev_id: 1, user_id: 2, user_key: 'K' }, () => calls.push('c'));
  await b.flush(1000);
  assert.equal(c.api.isMaster(), false);
  assert.equal(b.openSockets().length, 1);
  assert.deepEqual(calls, ['a', 'c']);
  a.api.start({ dev_id: 1, user_id: 2, user_key: 'K' }, () => calls.push('a again'));
  await b.flush();
  assert.deepEqual(calls, ['a', 'c', 'a again'], 'start() once connected runs the callback at once');
  assert.equal(b.openSockets().length, 1);
});
