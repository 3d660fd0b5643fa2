// End-to-end checks of the browser client in Debian's Chromium against a
// running cometql server (skeleton: the scenarios grow with the server).
//
//   COMETQL_HTTP   the server's HTTP base, e.g. http://127.0.0.1:8087 (required)
//   COMETQL_MYSQL  CometQL DSN, go-sql-driver style: root:PASSWORD@tcp(127.0.0.1:3300)/
//                  (optional: publishing checks are skipped without it; uses the
//                  mysql/mariadb command-line client)
//   CHROMIUM       browser binary (default /usr/bin/chromium)
//
// Run: cd jsapi/js && npm install && COMETQL_HTTP=... node test/browser/run.mjs
// Prints "N passed, N failed" and exits non-zero on failure.
import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';

const HTTP = (process.env.COMETQL_HTTP || '').replace(/\/+$/, '');
const DSN = process.env.COMETQL_MYSQL || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
if (!HTTP) {
  console.error('set COMETQL_HTTP to the server base URL, e.g. http://127.0.0.1:8087');
  process.exit(2);
}
const node = new URL(HTTP).host;

// cometql runs one CometQL statement with the mysql command-line client.
function cometql(sql) {
  const m = /^([^:@]+)(?::([^@]*))?@tcp\(([^:)]+):(\d+)\)/.exec(DSN);
  if (!m) throw new Error(`cannot parse COMETQL_MYSQL=${DSN}`);
  const [, user, pass = '', host, port] = m;
  const args = ['-h', host, '-P', port, '-u', user, `-p${pass}`, '--protocol=tcp', '-N', '-e', sql];
  for (const bin of ['mysql', 'mariadb']) {
    try {
      return execFileSync(bin, args, { encoding: 'utf8', timeout: 10000 });
    } catch (e) {
      if (e.code !== 'ENOENT') throw e;
    }
  }
  throw new Error('no mysql or mariadb client installed');
}

// waitFor polls fn in the page until it returns a truthy value.
async function waitFor(page, fn, arg, ms = 10000) {
  const h = await page.waitForFunction(fn, arg, { timeout: ms, polling: 50 });
  return h.jsonValue();
}

// openTab opens the server's page with the client loaded and started.
async function openTab(ctx, opt) {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(HTTP + '/');
  await page.addScriptTag({ url: HTTP + '/CometServerApi.js' });
  await page.evaluate((o) => {
    window.__got = [];
    cometApi.subscription('web_e2e', (e) => window.__got.push(e));
    cometApi.start(o);
  }, { dev_id: 0, node, ...opt });
  return page;
}

const results = [];
async function check(name, fn) {
  try {
    await fn();
    results.push([name, null]);
    console.log(`ok   ${name}`);
  } catch (e) {
    results.push([name, e]);
    console.log(`FAIL ${name}\n     ${String(e && e.message).split('\n')[0]}`);
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
try {
  const ctx = await browser.newContext();
  let a;
  let b;

  await check('anonymous connection: serverInfo says not authorized', async () => {
    a = await openTab(ctx, {});
    const auth = await waitFor(a, () => cometApi.isAuthorized() !== undefined && cometApi.isAuthorized());
    assert(auth === false, `isAuthorized() = ${auth}`);
    assert((await a.evaluate(() => cometApi.isMaster())) === true, 'first tab holds the connection');
    assert((await a.evaluate(() => cometApi.getTransport())) === 'ws', 'WebSocket transport');
  });

  await check('a second tab shares the connection', async () => {
    b = await openTab(ctx, {});
    await waitFor(b, () => cometApi.isMaster() === false && cometApi.isAuthorized() === false);
  });

  await check('count_users_in_pipe answers through the shared connection', async () => {
    const n = await b.evaluate(
      () => new Promise((res) => cometApi.count_users_in_pipe('web_e2e', (e) => res(e.data.user_in_pipe))),
    );
    assert(n === 1, `user_in_pipe = ${n} (two tabs, one connection)`);
  });

  if (DSN) {
    await check('a CometQL publish reaches both tabs', async () => {
      cometql(`INSERT INTO pipes_messages (name, event, message) VALUES ('web_e2e', 'ev', '{"n":1,"s":"it''s"}')`);
      for (const p of [a, b]) {
        const e = await waitFor(p, () => window.__got.find((x) => x.server_info.event === 'ev'));
        assert(e.data.n === 1 && e.data.s === "it's", JSON.stringify(e));
      }
    });
  } else {
    console.log('skip publishing checks (COMETQL_MYSQL not set)');
  }

  await check('closing the leader tab: the other takes over', async () => {
    await a.close({ runBeforeUnload: true });
    await waitFor(b, () => cometApi.isMaster() === true && cometApi.isConnected(), undefined, 15000);
  });
} finally {
  await browser.close();
}

const failed = results.filter((r) => r[1]).length;
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
