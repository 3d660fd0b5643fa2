// A minimal fake browser for unit-testing jsapi/static/CometServerApi.js in
// node:vm. It only records what the client does and lets a test answer: the
// real server is tested end to end by test/browser/run.mjs.
//
// One Browser = one origin: a shared clock, localStorage, BroadcastChannel
// hub and (optionally) Web Locks; browser.tab() loads the client in a new
// window context, like opening a tab.
import vm from 'node:vm';
import fs from 'node:fs';

export const SRC_PATH = new URL('../../static/CometServerApi.js', import.meta.url);
const SRC = fs.readFileSync(SRC_PATH, 'utf8');

export class Clock {
  constructor() {
    this.t = 1700000000000;
    this.q = [];
    this.n = 0;
  }
  setTimeout(fn, ms) {
    const id = ++this.n;
    this.q.push({ id, at: this.t + Math.max(0, Number(ms) || 0), fn });
    return id;
  }
  setInterval(fn, ms) {
    const id = ++this.n;
    this.q.push({ id, at: this.t + ms, fn, every: Math.max(1, ms) });
    return id;
  }
  clear(id) {
    this.q = this.q.filter((e) => e.id !== id);
  }
  // advance runs every timer due within ms, in time order.
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let best = null;
      for (const e of this.q) {
        if (e.at <= end && (!best || e.at < best.at || (e.at === best.at && e.id < best.id))) best = e;
      }
      if (!best) break;
      this.t = best.at;
      if (best.every) best.at += best.every;
      else this.q = this.q.filter((e) => e !== best);
      best.fn();
    }
    this.t = end;
  }
}

class FakeStorage {
  constructor(browser) {
    this.m = new Map();
    this.browser = browser;
    this.broken = false;
  }
  getItem(k) {
    if (this.broken) throw new Error('SecurityError');
    return this.m.has(k) ? this.m.get(k) : null;
  }
  setItem(k, v) {
    if (this.broken) throw new Error('QuotaExceededError');
    const old = this.getItem(k);
    v = String(v);
    this.m.set(k, v);
    if (old !== v) this.browser._storageEvent(this, k, old, v);
  }
  removeItem(k) {
    this.m.delete(k);
  }
}

// Web Locks with the parts the client uses: exclusive locks, ifAvailable, signal.
class FakeLocks {
  constructor() {
    this.held = new Map();
    this.queues = new Map();
  }
  request(name, opts, cb) {
    if (typeof opts === 'function') {
      cb = opts;
      opts = {};
    }
    return new Promise((resolve, reject) => {
      const entry = { cb, resolve, reject };
      if (!this.held.get(name)) return this._grant(name, entry);
      if (opts.ifAvailable) {
        Promise.resolve().then(() => cb(null)).then(resolve, reject);
        return undefined;
      }
      const q = this.queues.get(name) || [];
      this.queues.set(name, q);
      q.push(entry);
      if (opts.signal) {
        opts.signal.addEventListener('abort', () => {
          const i = q.indexOf(entry);
          if (i >= 0) {
            q.splice(i, 1);
            const e = new Error('aborted');
            e.name = 'AbortError';
            reject(e);
          }
        });
      }
      return undefined;
    });
  }
  _grant(name, entry) {
    this.held.set(name, true);
    Promise.resolve()
      .then(() => entry.cb({ name }))
      .then(
        (v) => {
          this._release(name);
          entry.resolve(v);
        },
        (e) => {
          this._release(name);
          entry.reject(e);
        },
      );
  }
  _release(name) {
    this.held.set(name, false);
    const q = this.queues.get(name);
    if (q && q.length) this._grant(name, q.shift());
  }
}

export class Browser {
  constructor({ locks = false, src = SRC } = {}) {
    this.src = src;
    this.clock = new Clock();
    this.storage = new FakeStorage(this);
    this.channels = new Map();
    this.locks = locks ? new FakeLocks() : null;
    this.tabs = [];
    this.sockets = []; // every WebSocket opened by any tab
    this.xhrs = []; // every XMLHttpRequest sent by any tab
    this.beacons = [];
  }

  _storageEvent(storage, key, oldValue, newValue) {
    for (const t of this.tabs) {
      if (t.closed || t.win === this._writer) continue;
      for (const fn of t.listeners.storage || []) {
        this.clock.setTimeout(() => {
          if (!t.closed) fn({ key, oldValue, newValue });
        }, 0);
      }
    }
  }

  // tab opens a page with the client loaded. Options remove browser features.
  tab({ noWebSocket = false, noBroadcastChannel = false, host = 'example.test:8087', protocol = 'http:' } = {}) {
    const browser = this;
    const clock = this.clock;
    const listeners = {};
    const errors = [];
    const t = { listeners, errors, closed: false, timers: new Set(), channels: [] };

    class FakeWebSocket {
      constructor(url) {
        this.url = url;
        this.sent = [];
        this.readyState = 0;
        this.tab = t;
        browser.sockets.push(this);
      }
      send(text) {
        if (this.readyState !== 1) throw new Error('InvalidStateError');
        this.sent.push(text);
      }
      close() {
        this.readyState = 3;
        this.closedByClient = true;
      }
      // test side
      serverOpen() {
        this.readyState = 1;
        if (this.onopen) this.onopen({});
      }
      serverSend(text) {
        if (this.onmessage) this.onmessage({ data: typeof text === 'string' ? text : JSON.stringify(text) });
      }
      serverDrop() {
        this.readyState = 3;
        if (this.onclose) this.onclose({ wasClean: false, code: 1006 });
      }
    }

    class FakeXHR {
      constructor() {
        this.readyState = 0;
        this.tab = t;
      }
      open(method, url) {
        this.method = method;
        this.url = url;
      }
      send(body) {
        this.body = body;
        browser.xhrs.push(this);
      }
      abort() {
        this.aborted = true;
      }
      respond(status, body) {
        this.status = status;
        this.responseText = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
        this.readyState = 4;
        if (this.onreadystatechange) this.onreadystatechange();
      }
    }
    FakeXHR.prototype.withCredentials = false;

    class FakeBroadcastChannel {
      constructor(name) {
        this.name = name;
        t.channels.push(this);
        if (!browser.channels.has(name)) browser.channels.set(name, new Set());
        browser.channels.get(name).add(this);
      }
      postMessage(m) {
        const data = structuredClone(m);
        for (const c of browser.channels.get(this.name)) {
          if (c === this) continue;
          clock.setTimeout(() => {
            if (!c.closed && c.onmessage) c.onmessage({ data: structuredClone(data) });
          }, 0);
        }
      }
      close() {
        this.closed = true;
        browser.channels.get(this.name).delete(this);
      }
    }

    const win = {
      console: {
        log() {},
        warn() {},
        error(...a) {
          errors.push(a.map(String).join(' '));
        },
      },
      setTimeout: (fn, ms) => {
        const id = clock.setTimeout(fn, ms);
        t.timers.add(id);
        return id;
      },
      clearTimeout: (id) => clock.clear(id),
      setInterval: (fn, ms) => {
        const id = clock.setInterval(fn, ms);
        t.timers.add(id);
        return id;
      },
      clearInterval: (id) => clock.clear(id),
      Date: { now: () => clock.t },
      location: { host, protocol },
      navigator: {},
      localStorage: this.storage,
      WebSocket: noWebSocket ? undefined : FakeWebSocket,
      BroadcastChannel: noBroadcastChannel ? undefined : FakeBroadcastChannel,
      XMLHttpRequest: FakeXHR,
      AbortController,
      addEventListener(type, fn) {
        (listeners[type] = listeners[type] || []).push(fn);
      },
      removeEventListener(type, fn) {
        listeners[type] = (listeners[type] || []).filter((f) => f !== fn);
      },
    };
    if (this.locks) win.navigator.locks = this.locks;
    win.window = win;
    vm.createContext(win);
    // The storage event never fires in the tab that wrote.
    const realSet = FakeStorage.prototype.setItem;
    win.localStorage = {
      getItem: (k) => browser.storage.getItem(k),
      setItem: (k, v) => {
        browser._writer = win;
        try {
          realSet.call(browser.storage, k, v);
        } finally {
          browser._writer = null;
        }
      },
      removeItem: (k) => browser.storage.removeItem(k),
    };
    vm.runInContext(this.src, win, { filename: 'CometServerApi.js' });
    t.win = win;
    t.api = win.cometApi;
    t.fire = (type, ev) => {
      for (const fn of listeners[type] || []) fn(ev || {});
    };
    // close simulates closing the tab: pagehide, then nothing runs any more.
    t.close = () => {
      t.fire('pagehide', { persisted: false });
      t.kill();
    };
    // kill simulates a crash: no pagehide, its timers and channels just stop.
    t.kill = () => {
      t.closed = true;
      for (const id of t.timers) clock.clear(id);
      for (const c of t.channels) if (!c.closed) c.close();
      for (const ws of browser.sockets) if (ws.tab === t) ws.readyState = 3;
    };
    this.tabs.push(t);
    return t;
  }

  // sockets of one tab, or all, still usable by the client
  openSockets(tab) {
    return this.sockets.filter((s) => (!tab || s.tab === tab) && s.readyState !== 3);
  }

  lastSocket() {
    return this.sockets[this.sockets.length - 1];
  }

  // flush runs due timers and pending promise jobs (Web Locks) a few times.
  async flush(ms = 0) {
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setImmediate(r));
      this.clock.advance(0);
    }
    if (ms) {
      this.clock.advance(ms);
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setImmediate(r));
        this.clock.advance(0);
      }
    }
  }
}
