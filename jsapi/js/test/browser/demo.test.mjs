// The chat demo at /demo/, used as a person would: two browsers chat, see
// each other online, get a backend's posts, and a newcomer gets the history.
// Set DEMO_SHOTS to a directory to keep screenshots of the pages.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, afterEach, before, test } from 'node:test';
import { HTTP, T, closeQL, contexts, launch, ql, watch } from './lib.mjs';

const CHAT = 'web_demo_chat';
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

async function openDemo(name, url = HTTP + '/demo/') {
  const c = await ctx.make({ viewport: { width: 1100, height: 720 } });
  const page = watch(await c.newPage(), name);
  const res = await page.goto(url);
  assert.equal(res.status(), 200, `GET ${url}`);
  await page.waitForSelector('#status[data-state="on"]', { timeout: 20_000 });
  return page;
}

// messages returns the chat as [{kind, who, text, meta}].
function messages(page) {
  return page.$$eval('#messages > li', (lis) =>
    lis.map((li) => ({
      kind: li.className.replace(/^msg /, ''),
      who: li.querySelector('.who').textContent,
      text: li.querySelector('.text').textContent,
      meta: li.querySelector('.meta').textContent,
    })),
  );
}

async function waitMessage(page, text, kind) {
  await page.waitForFunction(
    ([t, k]) => [...document.querySelectorAll('#messages > li')].some((li) => li.querySelector('.text').textContent === t && (!k || li.classList.contains(k))),
    [text, kind],
    { timeout: 10_000, polling: 50 },
  );
}

function members(page, n) {
  return page.waitForFunction((k) => document.querySelectorAll('#members > li').length === k, n, { timeout: 10_000, polling: 50 });
}

async function send(page, text) {
  await page.fill('#text', text);
  await page.click('#send button[type=submit]');
}

async function shot(page, name) {
  if (process.env.DEMO_SHOTS) await page.screenshot({ path: path.join(process.env.DEMO_SHOTS, name + '.png') });
}

test('demo: two browsers chat, see who is online, get backend posts; a newcomer gets the history', { timeout: 90_000 }, async () => {
  await ql(`DELETE FROM pipes_settings WHERE name = '${CHAT}'`); // start without history

  const alice = await openDemo('alice', HTTP + '/demo'); // the slash is added
  assert.match(alice.url(), /\/demo\/$/);
  const bob = await openDemo('bob');
  await members(alice, 2);
  await members(bob, 2);
  const you = await alice.$$eval('#members .you', (l) => l.length);
  assert.equal(you, 1, 'alice is marked as "you" once');
  const line = await alice.$eval('#members > li', (li) => li.textContent);
  assert.match(line, /^[A-Za-z0-9_-]{8}…guest \(user_id 0\)/, `member line: ${line}`);

  // Alice writes; the text is shown as text, never as HTML.
  await alice.fill('#name', 'Alice');
  const evil = `<img src=x onerror="window.__xss=1"> it's & "so" <b>bold</b>`;
  await send(alice, evil);
  await waitMessage(bob, evil, 'live');
  const got = (await messages(bob)).find((m) => m.text === evil);
  assert.equal(got.who, 'Alice');
  assert.equal(await bob.$$eval('#messages img, #messages b', (l) => l.length), 0, 'no element made from the text');
  assert.equal(await bob.evaluate(() => window.__xss), undefined);
  await alice.waitForFunction(
    (t) => [...document.querySelectorAll('#messages > li.own')].some((li) => li.querySelector('.text').textContent === t && / delivered to 1 connection$/.test(li.querySelector('.meta').textContent)),
    evil,
    { timeout: 10_000, polling: 50 },
  );

  // Bob answers; and a second tab of Alice's browser sees her next message
  // although tabs share one connection (the server does not echo to it).
  await bob.fill('#name', 'Bob');
  await send(bob, 'hi Alice');
  await waitMessage(alice, 'hi Alice', 'live');
  const alice2 = watch(await alice.context().newPage(), 'alice tab 2');
  await alice2.goto(HTTP + '/demo/');
  await alice2.waitForSelector('#status[data-state="on"]', { timeout: 20_000 });
  await members(alice2, 2); // still two browsers online
  await send(alice, 'from the first tab');
  await waitMessage(alice2, 'from the first tab', 'live');
  await waitMessage(bob, 'from the first tab', 'live');
  await send(alice2, 'from the second tab');
  await waitMessage(alice, 'from the second tab', 'live');
  await waitMessage(bob, 'from the second tab', 'live');
  const count = (p, text) => p.$$eval('#messages > li .text', (l, t) => l.filter((e) => e.textContent === t).length, text);
  for (const p of [alice, alice2, bob]) {
    for (const text of ['from the first tab', 'from the second tab']) assert.equal(await count(p, text), 1, `"${text}" once`);
  }
  await alice2.close();

  // A backend posts with CometQL: the statement the page shows.
  const shown = await alice.$eval('#sql', (e) => e.textContent);
  assert.ok(
    shown.includes(`mysql -h127.0.0.1 -P3300 -uroot -p<password> CometQL_v1 -e "INSERT INTO pipes_messages (name, event, message) VALUES ('web_demo_chat', 'message', '{\\"name\\":\\"backend\\",\\"text\\":\\"hello\\"}')"`),
    shown,
  );
  assert.ok(shown.includes(`INSERT INTO pipes_settings (name, length) VALUES ('web_demo_chat', 100)`), shown);
  await ql(`INSERT INTO pipes_messages (name, event, message) VALUES ('web_demo_chat', 'message', '{"name":"backend","text":"hello"}')`);
  await ql(`INSERT INTO pipes_messages (name, event, message) VALUES ('web_demo_chat', 'alert', 'plain <i>text</i>')`);
  for (const p of [alice, bob]) {
    await waitMessage(p, 'hello', 'live');
    await waitMessage(p, 'plain <i>text</i>', 'live');
    const m = await messages(p);
    assert.equal(m.find((x) => x.text === 'hello').who, 'backend');
    assert.match(m.find((x) => x.text === 'plain <i>text</i>').meta, /event alert/);
  }

  // History on: a newcomer sees what was said since.
  await ql(`INSERT INTO pipes_settings (name, length) VALUES ('web_demo_chat', 100)`);
  await send(bob, 'kept for later');
  await waitMessage(alice, 'kept for later', 'live');
  await ql(`INSERT INTO pipes_messages (name, event, message) VALUES ('web_demo_chat', 'message', '{"name":"backend","text":"also kept"}')`);
  await waitMessage(alice, 'also kept', 'live');
  const carol = await openDemo('carol');
  await waitMessage(carol, 'kept for later', 'history');
  await waitMessage(carol, 'also kept', 'history');
  const hist = (await messages(carol)).map((m) => `${m.kind}:${m.who}:${m.text}`);
  assert.deepEqual(hist, ['history:Bob:kept for later', 'history:backend:also kept']);
  await members(alice, 3);
  await shot(alice, 'demo-alice');
  await shot(carol, 'demo-carol');
  await carol.context().close();
  await members(alice, 2);

  for (const p of [alice, bob]) assert.deepEqual(p.errors, [], 'no page errors');
  await ql(`DELETE FROM pipes_settings WHERE name = '${CHAT}'`);
});

test('demo: a user signed in with users_auth gets private messages', { timeout: T }, async () => {
  const id = 4242;
  await ql(`INSERT INTO users_auth (id, hash) VALUES (${id}, 'secret${id}')`);
  const page = await openDemo('signed in', `${HTTP}/demo/?user_id=${id}&user_key=secret${id}`);
  await page.waitForFunction(() => / · user 4242$/.test(document.getElementById('status').textContent), null, { timeout: 10_000 });
  await ql(`INSERT INTO users_messages (id, event, message) VALUES (${id}, 'note', 'hi there')`);
  await waitMessage(page, 'hi there', 'private');
  const line = await page.$eval('#members li .uid', (e) => e.textContent);
  assert.equal(line, `user_id ${id}`);
});
