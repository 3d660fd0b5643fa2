/*!
 * cometql browser client, served by cometql at /CometServerApi.js.
 *
 * Pages written for the CppComet client (CometServerApi.js 4.08) work with it
 * unchanged: the globals `cometApi` and `CometServer()` keep the same methods
 * and callbacks get the same `{data, server_info}` objects.
 * On top of that (cometql SPEC 6.2):
 *   - one connection per browser: the tabs elect a leader tab that holds the
 *     connection; the other tabs talk to it over BroadcastChannel (or
 *     localStorage events where BroadcastChannel is missing);
 *   - reconnection with jittered exponential backoff (capped at 30 s);
 *   - recovery: for pipes whose frames carry `seq`, messages missed while
 *     disconnected are fetched with `pipe_log ... since` and delivered once,
 *     in seq order, before the live messages that raced them;
 *   - a message one tab sends with web_pipe_send reaches the other tabs of
 *     the browser once the server accepted it (the server does not send it
 *     back to the shared connection), as it would with one connection each;
 *   - a long-polling fallback (/lp/...) when WebSocket does not work;
 *   - unsubscribing sends the reduced pipe list to the server.
 * Plain ES5, no dependencies, never uses eval.
 */
(function (W) {
    'use strict';
    if (!W || (W.cometApi && W.cometApi.impl && String(W.cometApi.impl).indexOf('cometql') === 0)) {
        return; // no window, or this file is already loaded on the page
    }

    // ------------------------------------------------------------------
    // Constants
    // ------------------------------------------------------------------
    var API_VERSION = '4.08';            // the `v` URL parameter: the protocol version we speak
    var IMPL = 'cometql-js/1.0.0';
    var BACKOFF_BASE = 1000;             // first retry after 0.5..1 s
    var BACKOFF_CAP = 30000;             // never wait longer than 30 s
    var STABLE_MS = 5000;                // a connection that lived this long resets the backoff
    var WS_FAILS_BEFORE_LP = 2;          // WebSocket attempts that fail before trying long-polling
    var WS_CONNECT_TIMEOUT = 10000;      // no first frame by then: the attempt failed
    var WS_PROBE_MS = 30000;             // on long-polling, try WebSocket again about this often
    var LP_POLL_TIMEOUT = 40000;         // the server holds a poll about 25 s
    var LP_REQ_TIMEOUT = 15000;
    var LP_POLL_RETRIES = 3;             // failed polls in a row before the session is given up
    var TICK_MS = 1000;                  // one timer per tab for every periodic duty
    var LEADER_TIMEOUT = 5000;           // heartbeat election: silence after which a follower claims
    var CLAIM_MS = 400;                  // heartbeat election: how long a claim waits for objections
    var LOCK_ROLL_TICKS = 10;            // lock election: roll call every 10 ticks
    var LEADER_CONNECT_DELAY = 150;      // a new leader waits this long for the other tabs' pipes
    var LOG_WINDOW_MS = 30000;           // how long an explicit get_pipe_log replay is expected
    var REC_MS = 15000;                  // a recovery whose end never shows is over after this long without progress
    var ONCE_TTL = 600000;               // unanswered one-shot callbacks are dropped after 10 min
    var MAX_QUEUE = 1000;                // commands kept while disconnected
    var PIPE_RE = /^[A-Za-z0-9_-]{2,64}$/;
    var UUID_RE = /^[A-Za-z0-9_-]{32}$/;
    var ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
    var UUID_KEY = 'comet_server_uuid';  // the original's key, so browsers keep their uuid
    var LOG_KEY = 'comet_LogLevel';

    var hasOwn = Object.prototype.hasOwnProperty;
    var con = W.console || {};

    // ------------------------------------------------------------------
    // Small helpers
    // ------------------------------------------------------------------
    function noop() {}
    // dict makes a map without a prototype: pipe names such as "constructor"
    // or "__proto__" are valid and must not meet Object.prototype.
    function dict() { return Object.create(null); }
    function now() { return Date.now(); }
    function later(fn, ms) { return W.setTimeout(fn, ms); }
    function cancel(t) { if (t) { W.clearTimeout(t); } return null; }

    function rand() {
        var c = W.crypto;
        if (c && c.getRandomValues && typeof Uint32Array !== 'undefined') {
            var a = new Uint32Array(1);
            c.getRandomValues(a);
            return a[0] / 4294967296;
        }
        return Math.random();
    }

    function randStr(n, chars) {
        chars = chars || ALNUM;
        var s = '';
        for (var i = 0; i < n; i++) {
            s += chars.charAt(Math.floor(rand() * chars.length));
        }
        return s;
    }

    function logTo(kind, args) {
        var f = con[kind] || con.log;
        if (f) {
            try { f.apply(con, args); } catch (e) { /* console unusable */ }
        }
    }
    function logErr() { logTo('error', ['[cometql]'].concat([].slice.call(arguments))); }
    function logWarn() { logTo('warn', ['[cometql]'].concat([].slice.call(arguments))); }
    function debug() {
        if (api.LogLevel > 0) { logTo('log', ['[cometql]'].concat([].slice.call(arguments))); }
    }

    // safeCall runs a page's callback; what it throws is reported, never propagated.
    function safeCall(fn, arg) {
        try {
            fn(arg);
        } catch (e) {
            logErr('error in a callback:', e);
        }
    }

    function pushCapped(list, item) {
        list.push(item);
        if (list.length > MAX_QUEUE) { list.shift(); }
    }

    function storage() {
        try { return W.localStorage || null; } catch (e) { return null; } // access may throw
    }
    function lsGet(k) {
        var s = storage();
        try { return s ? s.getItem(k) : null; } catch (e) { return null; }
    }
    function lsSet(k, v) {
        var s = storage();
        try {
            if (s) { s.setItem(k, v); return true; }
        } catch (e) { /* quota or privacy mode */ }
        return false;
    }

    // ------------------------------------------------------------------
    // Pure protocol helpers (exported on cometApi._cometql for tests)
    // ------------------------------------------------------------------

    // splitName splits "pipe.event" into its parts only when the name has
    // exactly one dot with text on both sides; otherwise the name is a pipe.
    function splitName(name) {
        var m = /^([^.]+)\.([^.]+)$/.exec(name);
        return m ? { pipe: m[1], event: m[2] } : { pipe: name, event: null };
    }

    // parseFrames turns one WebSocket text frame into frame objects. A frame
    // may hold several JSON objects separated by "\n". Like the original
    // client, the two characters backslash-apostrophe are rewritten to an
    // apostrophe before parsing (the server escapes ' as \u0027, so valid
    // frames never contain them). Lines that do not parse are dropped.
    function parseFrames(text) {
        var out = [];
        var lines = String(text).split('\n');
        for (var i = 0; i < lines.length; i++) {
            var line = lines[i].replace(/^\s+|\s+$/g, '');
            if (!line) { continue; }
            try {
                var f = JSON.parse(line.replace(/\\'/g, "'"));
                if (f && typeof f === 'object') { out.push(f); }
            } catch (e) {
                debug('dropped a frame that is not JSON:', line);
            }
        }
        return out;
    }

    // parseData returns a frame's data: parsed when it is a string holding
    // JSON, else unchanged.
    function parseData(d) {
        if (typeof d !== 'string') { return d; }
        try {
            return JSON.parse(d);
        } catch (e) { /* not JSON as it is */ }
        if (d.indexOf("\\'") >= 0) {
            try { return JSON.parse(d.replace(/\\'/g, "'")); } catch (e2) { /* keep the string */ }
        }
        return d;
    }

    // backoff returns the delay before reconnection attempt number `attempt`
    // (0-based): exponential from 1 s, capped at 30 s, with "equal jitter"
    // (a random value between half the step and the whole step).
    function backoff(attempt, r) {
        var step = Math.min(BACKOFF_CAP, BACKOFF_BASE * Math.pow(2, Math.min(attempt, 20)));
        if (r === undefined) { r = rand(); }
        return Math.round(step / 2 + r * step / 2);
    }

    function makeMarker() { return randStr(12); }

    // ------------------------------------------------------------------
    // Options, nodes and URLs
    // ------------------------------------------------------------------
    var opts = {};
    var keyAt = 0;        // when opts.user_key was given
    var memUuid = null;

    function getUUID() {
        if (opts.uuid && UUID_RE.test(opts.uuid)) { return opts.uuid; }
        var u = lsGet(UUID_KEY);
        if (u && UUID_RE.test(u)) { return u; }
        if (!memUuid) { memUuid = randStr(32, ALNUM + '_-'); }
        lsSet(UUID_KEY, memUuid);
        return memUuid;
    }

    function cleanNode(n) {
        return String(n).replace(/^\s+|\s+$/g, '').replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '');
    }

    function nodes() {
        var list = opts.nodeList;
        var out = [];
        if (typeof list === 'string') { list = [list]; }
        if (list && list.length) {
            for (var i = 0; i < list.length; i++) {
                if (list[i]) { out.push(cleanNode(list[i])); }
            }
        }
        if (!out.length) { out.push((W.location && W.location.host) || 'localhost'); }
        return out;
    }

    function isSecure() {
        var w = opts.wss;
        if (w !== undefined && w !== null) { return !!w && w !== 'false'; }
        return !!(W.location && W.location.protocol === 'https:');
    }

    function numOr0(v) { return v === undefined || v === null || v === '' ? 0 : v; }

    // authParams builds "sesion=..&myid=..&devid=..&v=..&uuid=..&api=js"
    // (sesion with one s, as the original). enc encodes each value.
    function authParams(enc) {
        return 'sesion=' + enc(opts.user_key === undefined || opts.user_key === null ? '' : opts.user_key) +
            '&myid=' + enc(numOr0(opts.user_id)) +
            '&devid=' + enc(numOr0(opts.dev_id)) +
            '&v=' + API_VERSION +
            '&uuid=' + getUUID() +
            '&api=js';
    }

    // pathValue keeps a value raw in the WebSocket path as the original did
    // (user keys may hold = + /), percent-encoding only other characters.
    function pathValue(v) {
        v = String(v);
        return /^[A-Za-z0-9=+\/_.~-]*$/.test(v) ? v : encodeURIComponent(v);
    }
    function queryValue(v) { return encodeURIComponent(String(v)); }

    function wsUrl(node) {
        return (isSecure() ? 'wss' : 'ws') + '://' + node + '/ws/' + authParams(pathValue);
    }
    function httpBase(node) {
        return (isSecure() ? 'https' : 'http') + '://' + node;
    }
    function curNode() {
        var n = nodes();
        return n[cx.node % n.length];
    }
    function pickNode() {
        var n = nodes().length;
        if (n < 2) { return 0; }
        if (opts.roundrobin) {
            var id = parseInt(opts.user_id, 10);
            return id > 0 ? id % n : Math.floor(rand() * n);
        }
        return 0;
    }
    function nextNode() { cx.node = (cx.node + 1) % nodes().length; }

    // ------------------------------------------------------------------
    // Local (this tab's) subscribers and routing
    // ------------------------------------------------------------------
    var subs = dict();    // routing key -> [{id, cb}]
    var subById = dict(); // id -> {key, pipe}
    var subCount = 0;
    var pipeRefs = dict(); // server pipe -> number of this tab's subscriptions needing it
    var pipeOrder = [];   // this tab's server pipes in subscription order
    var once = dict();    // marker -> {cb, at}
    var lastSeq = dict(); // pipe -> highest seq delivered (those below it were delivered or are gone)
    var logWin = dict();  // pipe -> open get_pipe_log window {until, wait, seen}
    var recs = dict();    // pipe -> recovery in flight {until, held: seq -> live frame waiting for it}
    var recMark = null;   // marker of the reply that ends the recoveries in flight
    var authorized;       // undefined until the server told us
    var authCbs = { ok: [], fail: [] };
    var startCbs = [];

    function emit(key, msg) {
        var list = subs[key];
        if (!list) { return; }
        list = list.slice();
        for (var i = 0; i < list.length; i++) {
            if (subById[list[i].id]) { safeCall(list[i].cb, msg); }
        }
    }

    function setAuthorized(v) {
        var prev = authorized;
        authorized = v;
        if (prev !== v) {
            var l = (v ? authCbs.ok : authCbs.fail).slice();
            for (var i = 0; i < l.length; i++) { safeCall(l[i], v); }
        }
    }

    // mergeSeq adopts the leader's seq marks (a tab that just joined, or
    // the start of a recovery); frames held below a raised mark are delivered.
    function mergeSeq(map) {
        if (!map) { return; }
        var out = [];
        for (var k in map) {
            if (hasOwn.call(map, k) && typeof map[k] === 'number' && !(lastSeq[k] >= map[k])) {
                if (recs[k]) { take(k, recs[k], map[k] + 1, out); }
                lastSeq[k] = map[k];
            }
        }
        routeAll(out);
    }

    function openLogWindow(pipe) {
        logWin[pipe] = { until: tab.connected ? now() + LOG_WINDOW_MS : 0, wait: !tab.connected, seen: dict() };
    }

    // Recovery (SPEC 6.2). After a reconnection the leader sends the pipe
    // list, then "pipe_log <pipe> <marker> <since>" for each pipe with a
    // known seq, then a user_data request whose reply (marker recMark) comes
    // after every replayed frame: the server runs one connection's commands
    // in order. Until then a live frame that leaves a gap after the last
    // delivered seq is held: the replay fills the gap first, and the held
    // frames follow in seq order. Over long-polling the commands are separate
    // requests, so live frames often arrive before the replay. Outside a
    // recovery a gap is normal (the server never sends a connection its own
    // web_pipe_send messages) and is not waited for.

    // beginRecovery starts recoveries from the marks in q (pipe -> since);
    // every tab of the connection runs it.
    function beginRecovery(q, mark) {
        mergeSeq(q);
        recMark = mark;
        for (var p in q) {
            if (hasOwn.call(q, p) && typeof q[p] === 'number') {
                if (!recs[p]) { recs[p] = { held: dict() }; }
                recs[p].until = now() + REC_MS;
            }
        }
    }

    // endRecoveries delivers what was held, in seq order: the replays are
    // over (or, with t, the recoveries without progress since t).
    function endRecoveries(t) {
        var out = [];
        if (!t) { recMark = null; }
        for (var p in recs) {
            if (hasOwn.call(recs, p) && (!t || t > recs[p].until)) {
                var r = recs[p];
                delete recs[p];
                take(p, r, Infinity, out);
            }
        }
        routeAll(out);
    }

    // take moves the held frames of recovery r with seq below `below` to
    // out, in seq order, and raises lastSeq past them.
    function take(pipe, r, below, out) {
        var list = [];
        var k;
        for (k in r.held) {
            if (+k < below) { list.push(+k); }
        }
        list.sort(function (a, b) { return a - b; });
        for (var i = 0; i < list.length; i++) {
            k = list[i];
            out.push([r.held[k], false]);
            delete r.held[k];
            if (!(lastSeq[pipe] >= k)) { lastSeq[pipe] = k; }
        }
    }

    // drain moves held frames that now follow lastSeq without a gap to out.
    function drain(pipe, r, out) {
        var n;
        while (r.held[n = lastSeq[pipe] + 1]) {
            out.push([r.held[n], false]);
            delete r.held[n];
            lastSeq[pipe] = n;
        }
    }

    // seqFrame decides what a frame carrying seq delivers, and keeps lastSeq.
    // Returns the frames to route, in order, as [frame, history] pairs.
    // Live frames: each seq once, held during a recovery when they leave a
    // gap. History frames: inside an explicit get_pipe_log window, each seq
    // once, as history; otherwise only when newer than anything delivered
    // (a recovery), and then as live messages. A replay comes oldest first,
    // so held frames older than one of its frames were not in it.
    function seqFrame(f, pipe, hist) {
        var seq = f.seq;
        var t = now();
        var out = [];
        var w = logWin[pipe];
        if (w && !w.wait && t > w.until) {
            delete logWin[pipe];
            w = null;
        }
        var r = recs[pipe];
        if (r && t > r.until) {
            delete recs[pipe];
            take(pipe, r, Infinity, out);
            r = null;
        }
        var last = lastSeq[pipe];
        var held = r ? r.held[seq] : null;
        if (hist) {
            if (r) {
                r.until = t + REC_MS;
                take(pipe, r, seq, out);
                if (held) { delete r.held[seq]; }
            }
            if (w) {
                if (!w.seen[seq]) {
                    w.seen[seq] = 1;
                    out.push([f, true]);
                } else if (held) {
                    out.push([held, false]);
                }
            } else if (last === undefined) {
                return out; // history of a pipe this tab never saw and did not ask for
            } else if (held || seq > last) {
                out.push([held || f, false]);
            }
            if (!(lastSeq[pipe] >= seq)) { lastSeq[pipe] = seq; }
            if (r) { drain(pipe, r, out); }
            return out;
        }
        if (seq <= last || held || (w && w.seen[seq])) { return out; }
        if (w) { w.seen[seq] = 1; }
        if (r && seq > last + 1) {
            r.held[seq] = f; // the replay in flight fills the gap first
            return out;
        }
        lastSeq[pipe] = seq;
        out.push([f, false]);
        if (r) { drain(pipe, r, out); }
        return out;
    }

    function isEventName(e) {
        return typeof e === 'string' || typeof e === 'number';
    }

    // handleFrame routes one frame from the server to this tab's callbacks.
    function handleFrame(f) {
        if (!f || typeof f !== 'object') { return; }
        if (hasOwn.call(f, 'jscode')) { delete f.jscode; } // never evaluated
        if (f.data === undefined) { return; }
        var pipe = f.pipe;

        if (f.authorized !== undefined && f.event === 'serverInfo' && pipe === 'sys') {
            setAuthorized(f.authorized === true || f.authorized === 'true');
            for (var p in logWin) {
                if (hasOwn.call(logWin, p) && logWin[p].wait) {
                    logWin[p].wait = false;
                    logWin[p].until = now() + LOG_WINDOW_MS;
                }
            }
            runStartCbs();
            return;
        }

        if (f.marker && f.marker === recMark) {
            endRecoveries(0); // every replay asked for before it has arrived
            return;
        }
        var hist = f.history === true;
        if (typeof pipe === 'string' && typeof f.seq === 'number' && isFinite(f.seq)) {
            routeAll(seqFrame(f, pipe, hist));
        } else {
            route(f, hist);
        }
    }

    function routeAll(list) {
        for (var i = 0; i < list.length; i++) { route(list[i][0], list[i][1]); }
    }

    // route delivers one frame to this tab's callbacks; hist: as history.
    function route(f, hist) {
        var pipe = f.pipe;
        var msg = {
            data: parseData(f.data),
            server_info: {
                user_id: f.user_id ? f.user_id : 0,
                pipe: pipe,
                event: f.event,
                history: hist,
                marker: f.marker,
                uuid: f.uuid
            }
        };

        if (f.marker) {
            // A reply to one request of this tab; nobody else sees it.
            var o = once[f.marker];
            if (o) {
                delete once[f.marker];
                safeCall(o.cb, msg);
            }
            return;
        }

        if (pipe !== undefined && pipe !== null) {
            emit(String(pipe), msg);
            if (isEventName(f.event)) { emit(pipe + '.' + f.event, msg); }
        } else {
            if (isEventName(f.event)) { emit('msg.' + f.event, msg); }
            emit('msg', msg);
        }
        emit('', msg);
    }

    function handleFrames(list) {
        for (var i = 0; i < list.length; i++) {
            try {
                handleFrame(list[i]);
            } catch (e) {
                logErr('could not handle a frame:', e);
            }
        }
    }

    function addPipe(pipe) {
        if (pipeRefs[pipe]) {
            pipeRefs[pipe]++;
            return;
        }
        pipeRefs[pipe] = 1;
        pipeOrder.push(pipe);
        pipesChanged();
    }

    function dropPipe(pipe) {
        if (!pipeRefs[pipe]) { return; }
        if (--pipeRefs[pipe] > 0) { return; }
        delete pipeRefs[pipe];
        for (var i = 0; i < pipeOrder.length; i++) {
            if (pipeOrder[i] === pipe) {
                pipeOrder.splice(i, 1);
                break;
            }
        }
        pipesChanged();
    }

    function pipesChanged() {
        if (tab.leader === true) {
            scheduleSync();
        } else if (tab.leader === false && tab.bus) {
            postSub(false);
        }
    }

    function registerOnce(cb) {
        var m = makeMarker();
        once[m] = { cb: cb, at: now() };
        return m;
    }

    // ------------------------------------------------------------------
    // The tab group: leader election and messages between tabs
    // ------------------------------------------------------------------
    // Messages (all carry t = type and s = sender tab id):
    //   lead  leader -> all: "I hold the connection" (heartbeat / roll call),
    //         with a = authorized, r = connected, q = lastSeq map
    //   sub   follower -> leader: p = the follower's complete pipe list
    //         (h = true asks the leader to announce itself)
    //   cmd   follower -> leader: c = one command text to send
    //   rst   follower -> leader: reconnect, k = user key to use
    //   f     leader -> all: f = frames received from the server (x: the
    //         tab that must not handle them: a copy of its own message)
    //   rec   leader -> all: recoveries start, q = pipe -> since, m = the
    //         marker of the reply that ends them
    //   st    leader -> all: r = connected or not
    //   claim candidate -> all (heartbeat election only)
    //   bye   any -> all: the tab leaves the group
    var tab = {
        started: false, hidden: false, gen: 0, id: null, scope: null, bus: null,
        locks: false, release: null, abort: null,
        leader: undefined, leaderId: null, leaderAt: 0, candidate: null,
        peers: dict(), rollAt: 0, pending: [], connected: false, tick: null, ticks: 0, startT: null
    };

    function makeTabId() {
        return ('000000000' + now().toString(36)).slice(-9) + randStr(6);
    }

    function scopeOf() {
        return 'cometql|' + nodes().join(',') + '|' + numOr0(opts.dev_id) + '|' + numOr0(opts.user_id) +
            '|' + (isSecure() ? 's' : '');
    }

    // makeBus returns {post, close} over BroadcastChannel, else over
    // localStorage "storage" events, else null (the tab stays alone).
    function makeBus(name, onMsg) {
        if (W.BroadcastChannel) {
            try {
                var bc = new W.BroadcastChannel(name);
                bc.onmessage = function (e) { onMsg(e.data); };
                return {
                    post: function (m) {
                        try { bc.postMessage(m); } catch (e) { debug('bus post failed', e); }
                    },
                    close: function () {
                        try { bc.close(); } catch (e) { /* already closed */ }
                    }
                };
            } catch (e) { /* fall through to localStorage */ }
        }
        var st = storage();
        if (st && W.addEventListener && lsSet(name, '')) {
            var n = 0;
            var onStorage = function (e) {
                if (e.key === name && e.newValue) {
                    var m;
                    try { m = JSON.parse(e.newValue).m; } catch (x) { return; }
                    onMsg(m);
                }
            };
            W.addEventListener('storage', onStorage);
            return {
                post: function (m) {
                    // Set then remove: other tabs get the event, nothing stays stored.
                    if (lsSet(name, JSON.stringify({ n: tab.id + (++n), m: m }))) {
                        try { st.removeItem(name); } catch (e) { /* ignore */ }
                    }
                },
                close: function () {
                    if (W.removeEventListener) { W.removeEventListener('storage', onStorage); }
                }
            };
        }
        return null;
    }

    function post(m) {
        if (tab.bus) {
            m.s = tab.id;
            tab.bus.post(m);
        }
    }

    // postSub sends this tab's pipes to the leader. The first one (hello)
    // also carries the tab's user key and when it was given: the leader uses
    // the most recently given key when it next connects (a page that started
    // later has fresher credentials, e.g. a new JWT).
    function postSub(hello) {
        var m = { t: 'sub', p: pipeOrder.slice(), h: hello };
        if (hello && typeof opts.user_key === 'string') {
            m.k = opts.user_key;
            m.kt = keyAt;
        }
        post(m);
    }

    function announce() {
        post({ t: 'lead', a: authorized === undefined ? null : authorized, r: cx.ready, q: lastSeq });
    }

    function join() {
        var g = ++tab.gen;
        tab.scope = scopeOf();
        tab.id = makeTabId();
        tab.leader = undefined;
        tab.leaderId = null;
        tab.leaderAt = 0;
        tab.candidate = null;
        tab.peers = dict();
        tab.locks = false;
        tab.ticks = 0;
        tab.bus = opts.shareTabs === false ? null : makeBus(tab.scope, function (m) {
            if (tab.gen === g) { onBus(m); }
        });
        if (tab.tick) { W.clearInterval(tab.tick); }
        tab.tick = W.setInterval(onTick, TICK_MS);
        if (!tab.bus) {
            becomeLeader();
            return;
        }
        var locks = W.navigator && W.navigator.locks;
        if (locks && locks.request && typeof Promise !== 'undefined') {
            lockJoin(locks, g);
        } else {
            startElection();
        }
    }

    // lockJoin elects with the Web Locks API: whoever holds the lock is the
    // leader; the others queue for it and take over the moment it is freed.
    function lockJoin(locks, g) {
        tab.locks = true;
        var hold = function () {
            return new Promise(function (resolve) {
                if (tab.gen !== g) {
                    resolve();
                    return;
                }
                tab.release = resolve;
                becomeLeader();
            });
        };
        var fallback = function (e) {
            debug('Web Locks failed, using heartbeats', e);
            if (tab.gen === g && tab.leader !== true) {
                tab.locks = false;
                startElection();
            }
        };
        try {
            locks.request(tab.scope, { ifAvailable: true }, function (lock) {
                if (tab.gen !== g) { return undefined; }
                if (lock) { return hold(); }
                becomeFollower(null);
                var o = {};
                if (W.AbortController) {
                    tab.abort = new W.AbortController();
                    o.signal = tab.abort.signal;
                }
                locks.request(tab.scope, o, function () {
                    return tab.gen === g ? hold() : undefined;
                })['catch'](function (e) {
                    if (!(e && e.name === 'AbortError')) { fallback(e); }
                });
                return undefined;
            })['catch'](fallback);
        } catch (e) {
            fallback(e);
        }
    }

    // startElection (heartbeat election): claim the leadership, and take it
    // unless a leader or an older candidate objects within CLAIM_MS.
    function startElection() {
        if (tab.leader === true || tab.candidate || !tab.bus) { return; }
        var c = tab.candidate = { at: now() };
        post({ t: 'claim' });
        later(function () {
            if (tab.candidate === c) { becomeLeader(); }
        }, CLAIM_MS + Math.floor(rand() * 200));
    }

    function becomeLeader() {
        tab.candidate = null;
        tab.leader = true;
        tab.leaderId = tab.id;
        tab.peers = dict();
        debug('this tab holds the connection');
        announce();
        var pend = tab.pending;
        tab.pending = [];
        for (var i = 0; i < pend.length; i++) { sendCmd(pend[i], tab.id); }
        tab.startT = cancel(tab.startT);
        tab.startT = later(function () {
            tab.startT = null;
            if (tab.leader === true) { cxStart(); }
        }, tab.bus ? LEADER_CONNECT_DELAY : 0);
    }

    function becomeFollower(leaderId) {
        if (tab.leader === true) {
            tab.startT = cancel(tab.startT);
            cxStop();
            // Commands this tab could not send yet go to the new leader.
            tab.pending = cx.out.concat(tab.pending);
            cx.out = [];
            cx.pubs = [];
        }
        tab.leader = false;
        tab.leaderId = leaderId;
        tab.leaderAt = now();
        tab.candidate = null;
        postSub(true);
    }

    function flushPending() {
        var pend = tab.pending;
        tab.pending = [];
        for (var i = 0; i < pend.length; i++) { post({ t: 'cmd', c: pend[i] }); }
    }

    // setConnected records whether the browser's connection is up; a tab
    // that does not hold it runs its start() callbacks once it is.
    function setConnected(v) {
        tab.connected = !!v;
        if (tab.connected && tab.leader !== true) { runStartCbs(); }
    }

    // runStartCbs runs the start() callbacks waiting for a connection.
    function runStartCbs() {
        var cbs = startCbs;
        startCbs = [];
        for (var i = 0; i < cbs.length; i++) { safeCall(cbs[i]); }
    }

    function onBus(m) {
        if (!m || typeof m !== 'object' || !m.s || m.s === tab.id) { return; }
        var i;
        switch (m.t) {
        case 'lead':
            if (tab.leader === true) {
                // Two leaders (heartbeat election only): the older tab keeps it.
                if (!tab.locks && m.s < tab.id) {
                    becomeFollower(m.s);
                } else if (m.s > tab.id) {
                    announce();
                }
                if (tab.leader === true) { return; }
            }
            var isNew = tab.leaderId !== m.s;
            tab.leader = false;
            tab.leaderId = m.s;
            tab.leaderAt = now();
            tab.candidate = null;
            mergeSeq(m.q);
            if (m.a === true || m.a === false) { setAuthorized(m.a); }
            setConnected(m.r);
            postSub(isNew);
            flushPending();
            return;
        case 'sub':
            if (tab.leader === true) {
                tab.peers[m.s] = { p: m.p || [], at: now(), miss: 0 };
                scheduleSync();
                if (m.h) { announce(); }
                if (typeof m.k === 'string' && m.kt > keyAt) {
                    opts.user_key = m.k;
                    keyAt = m.kt;
                }
            }
            return;
        case 'cmd':
            if (tab.leader === true && typeof m.c === 'string') { sendCmd(m.c, m.s); }
            return;
        case 'rst':
            if (tab.leader === true) {
                if (typeof m.k === 'string') {
                    opts.user_key = m.k;
                    keyAt = now();
                }
                reconnect();
            }
            return;
        case 'f':
            if (tab.leader !== true && m.f && m.f.length) {
                tab.leaderAt = now();
                if (m.x !== tab.id) { handleFrames(m.f); }
            }
            return;
        case 'rec':
            if (tab.leader !== true && m.q && typeof m.m === 'string') { beginRecovery(m.q, m.m); }
            return;
        case 'st':
            if (tab.leader !== true && m.s === tab.leaderId) { setConnected(m.r); }
            return;
        case 'claim':
            if (tab.leader === true) {
                announce();
            } else if (tab.candidate && m.s < tab.id) {
                tab.candidate = null;
                tab.leaderAt = now() - LEADER_TIMEOUT + 2000; // claim again if it does not take over
            } else if (tab.candidate) {
                post({ t: 'claim' }); // a younger candidate may not have heard ours
            }
            return;
        case 'bye':
            if (tab.leader === true) {
                if (tab.peers[m.s]) {
                    delete tab.peers[m.s];
                    scheduleSync();
                }
            } else if (m.s === tab.leaderId) {
                tab.leaderId = null;
                setConnected(false);
                if (!tab.locks) {
                    tab.leaderAt = 0;
                    i = tab.gen;
                    later(function () {
                        if (tab.gen === i && tab.leaderId === null) { startElection(); }
                    }, Math.floor(rand() * 100));
                }
            }
            return;
        }
    }

    function onTick() {
        var t = now();
        var k;
        if (tab.leader === true) {
            if (tab.bus && (!tab.locks || ++tab.ticks % LOCK_ROLL_TICKS === 0)) {
                // Roll call: a tab that answered none of the last two is gone.
                // Counted in calls, not seconds, so throttled timers in a
                // background leader do not drop live tabs.
                for (k in tab.peers) {
                    if (hasOwn.call(tab.peers, k)) {
                        var peer = tab.peers[k];
                        peer.miss = peer.at < tab.rollAt ? (peer.miss || 0) + 1 : 0;
                        if (peer.miss >= 2) {
                            delete tab.peers[k];
                            scheduleSync();
                        }
                    }
                }
                tab.rollAt = t;
                announce();
            }
        } else if (tab.bus && !tab.locks && !tab.candidate && t - tab.leaderAt > LEADER_TIMEOUT) {
            startElection();
        }
        for (k in once) {
            if (hasOwn.call(once, k) && t - once[k].at > ONCE_TTL) { delete once[k]; }
        }
        for (k in logWin) {
            if (hasOwn.call(logWin, k) && !logWin[k].wait && t > logWin[k].until) { delete logWin[k]; }
        }
        var pubs = cx.pubs;
        while (pubs.length && t - pubs[0].at > ONCE_TTL) { pubs.shift(); }
        endRecoveries(t);
    }

    function leave() {
        var wasLeader = tab.leader === true;
        tab.gen++;
        tab.startT = cancel(tab.startT);
        if (wasLeader) { cxStop(); }
        if (tab.bus) {
            post({ t: 'bye' });
            tab.bus.close();
            tab.bus = null;
        }
        if (tab.release) {
            tab.release();
            tab.release = null;
        }
        if (tab.abort) {
            try { tab.abort.abort(); } catch (e) { /* already done */ }
            tab.abort = null;
        }
        if (tab.tick) {
            W.clearInterval(tab.tick);
            tab.tick = null;
        }
        tab.leader = false;
        tab.leaderId = null;
        tab.candidate = null;
        tab.peers = dict();
        setConnected(false);
    }

    // routeCmd sends a command from this tab: directly when it holds the
    // connection, through the leader otherwise, or keeps it until one exists.
    function routeCmd(text) {
        if (tab.leader === true) {
            sendCmd(text, tab.id);
        } else if (tab.leader === false && tab.leaderId && tab.bus) {
            post({ t: 'cmd', c: text });
        } else {
            pushCapped(tab.pending, text);
        }
        return true;
    }

    // ------------------------------------------------------------------
    // The connection (leader tab only): WebSocket or long-polling
    // ------------------------------------------------------------------
    var cx = {
        on: false, ws: null, probe: null, lp: null, tr: null, ready: false,
        attempt: 0, wsFails: 0, critical: false, node: 0, upAt: 0,
        timer: null, probeTimer: null, syncTimer: null, sent: null, out: [], jsonp: false,
        pubs: []  // web_pipe2 commands not yet reported: {p, e, d, x (sending tab), a (anonymous), at}
    };

    function unionPipes() {
        var seen = dict();
        var out = [];
        var add = function (list) {
            for (var i = 0; i < list.length; i++) {
                if (!hasOwn.call(seen, list[i]) && PIPE_RE.test(list[i])) {
                    seen[list[i]] = 1;
                    out.push(list[i]);
                }
            }
        };
        add(pipeOrder);
        for (var k in tab.peers) {
            if (hasOwn.call(tab.peers, k)) { add(tab.peers[k].p); }
        }
        return out;
    }

    function setReady(v) {
        v = !!v;
        if (cx.ready === v) { return; }
        cx.ready = v;
        if (!v) { cx.tr = null; }
        setConnected(v);
        post({ t: 'st', r: v });
    }

    function cxStart() {
        if (cx.on) { return; }
        cx.on = true;
        cx.attempt = 0;
        cx.critical = false;
        cx.wsFails = W.WebSocket ? 0 : WS_FAILS_BEFORE_LP;
        cx.node = pickNode();
        cxOpen();
    }

    function cxStop() {
        cx.on = false;
        cx.timer = cancel(cx.timer);
        cx.probeTimer = cancel(cx.probeTimer);
        cx.syncTimer = cancel(cx.syncTimer);
        closeWs(cx.ws);
        closeWs(cx.probe);
        cx.ws = cx.probe = null;
        if (cx.lp) {
            lpEnd(cx.lp, true);
            cx.lp = null;
        }
        setReady(false);
    }

    function reconnect() {
        var was = cx.on;
        cxStop();
        if (was || tab.leader === true) { cxStart(); }
    }

    function cxOpen() {
        cx.timer = null;
        if (!cx.on) { return; }
        if (W.WebSocket && cx.wsFails < WS_FAILS_BEFORE_LP) {
            wsOpen(false);
        } else {
            lpOpen();
        }
    }

    function cxRetry() {
        setReady(false);
        if (!cx.on || cx.timer) { return; }
        var d = cx.critical ? BACKOFF_CAP : backoff(cx.attempt++);
        debug('reconnecting in', d, 'ms');
        cx.timer = later(cxOpen, d);
    }

    function closeWs(ws) {
        if (!ws) { return; }
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        try { ws.close(); } catch (e) { /* already closed */ }
    }

    // transportUp runs when a transport can carry commands: it sends the
    // pipe list, asks for what was missed, then the queued commands.
    function transportUp(kind) {
        cx.tr = kind;
        cx.sent = null;
        setReady(true);
        syncNow();
        var pipes = unionPipes();
        var q = dict();
        var cmds = [];
        for (var i = 0; i < pipes.length; i++) {
            var p = pipes[i];
            if (typeof lastSeq[p] === 'number') {
                q[p] = lastSeq[p];
                cmds.push('pipe_log\n' + p + '\n' + makeMarker() + '\n' + q[p]);
            }
        }
        if (cmds.length) {
            // The reply to user_data comes after every replayed frame (see beginRecovery).
            var mark = makeMarker();
            beginRecovery(q, mark);
            post({ t: 'rec', q: q, m: mark });
            cmds.push('user_data\n' + mark + '\n1');
            for (i = 0; i < cmds.length; i++) { rawSend(cmds[i], true); }
        }
        var out = cx.out;
        cx.out = [];
        for (var j = 0; j < out.length; j++) { rawSend(out[j], false); }
    }

    // rawSend writes one command on the current transport. System commands
    // (pipe list, recovery) are regenerated on reconnection and never queued.
    function rawSend(text, sys) {
        if (cx.ready && cx.tr === 'ws' && cx.ws && cx.ws.readyState === 1) {
            try {
                cx.ws.send(text);
                return true;
            } catch (e) { debug('send failed', e); }
        } else if (cx.ready && cx.tr === 'lp' && cx.lp && cx.lp.sid) {
            cx.lp.q.push({ c: text, s: sys });
            lpFlush(cx.lp);
            return true;
        }
        if (!sys) { pushCapped(cx.out, text); }
        return false;
    }

    // sendCmd sends (or queues) a command of tab `from`.
    function sendCmd(text, from) {
        notePub(text, from);
        if (cx.syncTimer) { syncNow(); } // a pending pipe list goes first
        if (cx.ready) {
            rawSend(text, false);
        } else {
            pushCapped(cx.out, text);
        }
    }

    function scheduleSync() {
        if (!cx.syncTimer) {
            cx.syncTimer = later(syncNow, 20); // several subscription() calls make one frame
        }
    }

    // syncNow sends the complete pipe list when it differs from the last one
    // sent on this transport.
    function syncNow() {
        cx.syncTimer = cancel(cx.syncTimer);
        if (!cx.ready) { return; }
        var list = unionPipes();
        var s = 'subscription' + (list.length ? '\n' + list.join('\n') : '');
        if (s === cx.sent || (cx.sent === null && !list.length)) { return; }
        cx.sent = s;
        rawSend(s, true);
    }

    // notePub remembers a web_pipe2 command until its delivery report.
    function notePub(text, from) {
        var m = /^web_pipe2\n(@?)([^\n]*)\n([^\n]*)\n[^\n]*\n/.exec(text);
        if (m) {
            pushCapped(cx.pubs, { p: m[2], e: m[3], d: text.slice(m[0].length), x: from, a: !!m[1], at: now() });
        }
    }

    // ownCopy takes the server's delivery report of a browser publish and
    // returns {x, f}: the message as the server delivered it to the other
    // connections (f), for the tabs of this one but the sender (x). The
    // server runs a connection's commands in order, so unreported commands
    // older than the reported one on its pipe failed.
    function ownCopy(f) {
        var d = f.data;
        if (f.event !== 'answer' || !d || typeof d !== 'object' || typeof d.message !== 'string') { return null; }
        var pipe = f.pipe.substr(11); // after "_answer_to_"
        var list = cx.pubs;
        for (var i = 0; i < list.length; i++) {
            var e = list[i];
            if (e.p === pipe && e.d === d.message) {
                cx.pubs = list.filter(function (x, j) { return j > i || (j < i && x.p !== pipe); });
                var uid = (e.a || authorized !== true) ? 0 : (parseInt(opts.user_id, 10) || 0);
                return unionPipes().indexOf(pipe) < 0 ? null : {
                    x: e.x,
                    f: { data: e.d, event: e.e, message_send_time: f.message_send_time, pipe: pipe, user_id: uid }
                };
            }
        }
        return null;
    }

    // incomingFrames handles frames received by the leader: shared with the
    // other tabs, then routed here. Copies of the messages the tabs sent go
    // to the others after the delivery reports.
    function incomingFrames(list) {
        var fr = [];
        var own = [];
        var i;
        for (i = 0; i < list.length; i++) {
            if (typeof list[i] === 'string') {
                fr = fr.concat(parseFrames(list[i]));
            } else if (list[i] && typeof list[i] === 'object') {
                fr.push(list[i]);
            }
        }
        for (i = 0; i < fr.length; i++) {
            var f = fr[i];
            if (hasOwn.call(f, 'jscode')) { delete f.jscode; }
            if (f.pipe === 'sys') {
                checkSys(f);
            } else if (typeof f.pipe === 'string' && f.pipe.indexOf('_answer_to_') === 0 && cx.pubs.length) {
                var c = ownCopy(f);
                if (c) { own.push(c); }
            }
        }
        if (fr.length && tab.bus) { post({ t: 'f', f: fr }); }
        handleFrames(fr);
        for (i = 0; i < own.length; i++) {
            if (tab.bus) { post({ t: 'f', f: [own[i].f], x: own[i].x }); }
            if (own[i].x !== tab.id) { handleFrames([own[i].f]); }
        }
    }

    function checkSys(f) {
        if (f.event === 'serverInfo') {
            cx.critical = false;
            return;
        }
        if (f.event !== 'error') { return; }
        var d = f.data && typeof f.data === 'object' ? f.data : {};
        var code = parseInt(d.error_code || d.code, 10);
        if (code === 401 || code === 418) {
            cx.critical = true; // retrying soon would fail the same way
            logErr('the server refused the connection:', d.error || code);
        } else {
            logWarn('server error:', d.error || f.data);
        }
    }

    // ---- WebSocket

    function wsOpen(probe) {
        var ws;
        var got = false;
        var url = wsUrl(curNode());
        debug('connecting', url);
        try {
            ws = new W.WebSocket(url);
        } catch (e) {
            logErr('cannot open a WebSocket to', url, e);
            wsDown(null, probe, false);
            return;
        }
        if (probe) { cx.probe = ws; } else { cx.ws = ws; }
        var guard = later(function () {
            if (!got) {
                closeWs(ws);
                wsDown(ws, probe, false);
            }
        }, WS_CONNECT_TIMEOUT);
        ws.onopen = function () {
            if (!probe && cx.ws === ws) { transportUp('ws'); }
        };
        ws.onmessage = function (ev) {
            if (!got) {
                got = true;
                cancel(guard);
                cx.wsFails = 0;
                cx.upAt = now();
                if (probe) {
                    if (cx.probe !== ws) { return; }
                    cx.probe = null;
                    switchToWs(ws);
                }
            }
            if (cx.ws === ws) {
                try {
                    incomingFrames(parseFrames(ev.data));
                } catch (e) {
                    logErr('could not handle a message:', e);
                }
            }
        };
        ws.onclose = function () {
            cancel(guard);
            wsDown(ws, probe, got);
        };
        ws.onerror = noop; // a close event follows
    }

    function wsDown(ws, probe, got) {
        if (probe) {
            if (ws && cx.probe !== ws) { return; }
            cx.probe = null;
            scheduleProbe();
            return;
        }
        if (ws && cx.ws !== ws) { return; } // a socket we already left
        cx.ws = null;
        if (!got) {
            cx.wsFails++;
            nextNode();
        } else if (now() - cx.upAt >= STABLE_MS) {
            cx.attempt = 0;
        }
        cxRetry();
    }

    function switchToWs(ws) {
        var lp = cx.lp;
        cx.lp = null;
        if (lp) { lpEnd(lp, true); }
        cx.ws = ws;
        cx.probeTimer = cancel(cx.probeTimer);
        setReady(false);
        transportUp('ws');
    }

    function scheduleProbe() {
        if (!W.WebSocket || cx.probeTimer || !cx.on) { return; }
        cx.probeTimer = later(function () {
            cx.probeTimer = null;
            if (cx.on && cx.tr === 'lp' && !cx.probe) { wsOpen(true); }
        }, Math.round(WS_PROBE_MS * (0.75 + rand() * 0.5)));
    }

    // ---- Long-polling (SPEC 4; see /lp/... in the server's README)

    var corsXhr = (function () {
        try { return !!W.XMLHttpRequest && 'withCredentials' in new W.XMLHttpRequest(); } catch (e) { return false; }
    })();

    // http makes one request; cb(status, parsedBody) with status 0 on
    // network failure or timeout. Returns {abort}.
    function http(method, url, body, jsonp, timeout, cb) {
        if (jsonp) { return jsonpGet(url, timeout, cb); }
        var x;
        var done = false;
        var t = null;
        var fin = function (st, txt) {
            if (done) { return; }
            done = true;
            t = cancel(t);
            var obj = null;
            if (txt) {
                try { obj = JSON.parse(txt); } catch (e) { obj = null; }
            }
            cb(st, obj);
        };
        try {
            x = new W.XMLHttpRequest();
            x.open(method, url, true);
            x.onreadystatechange = function () {
                if (x.readyState === 4) { fin(x.status, x.responseText); }
            };
            x.send(body === undefined ? null : body);
        } catch (e) {
            later(function () { fin(0, null); }, 0);
        }
        t = later(function () {
            try { x.abort(); } catch (e) { /* gone */ }
            fin(0, null);
        }, timeout);
        return {
            abort: function () {
                done = true;
                t = cancel(t);
                try { x.abort(); } catch (e) { /* gone */ }
            }
        };
    }

    var jsonpCount = 0;

    // jsonpGet loads url&callback=fn with a script element (for browsers or
    // proxies without CORS). The body's "code" gives the status.
    function jsonpGet(url, timeout, cb) {
        var doc = W.document;
        var name = '__cometql_jp' + (++jsonpCount) + randStr(4);
        var s = null;
        var done = false;
        var t = null;
        var fin = function (st, obj) {
            if (done) { return; }
            done = true;
            t = cancel(t);
            W[name] = noop; // a late answer must not throw
            later(function () {
                try { delete W[name]; } catch (e) { W[name] = undefined; }
            }, 120000);
            if (s && s.parentNode) { s.parentNode.removeChild(s); }
            if (cb) { cb(st, obj); }
        };
        W[name] = function (obj) {
            fin(obj && obj.code ? parseInt(obj.code, 10) : (obj && obj.error ? 400 : 200), obj);
        };
        try {
            s = doc.createElement('script');
            s.async = true;
            s.onerror = function () { fin(0, null); };
            s.src = url + (url.indexOf('?') < 0 ? '?' : '&') + 'callback=' + name;
            (doc.head || doc.getElementsByTagName('head')[0] || doc.documentElement).appendChild(s);
        } catch (e) {
            later(function () { fin(0, null); }, 0);
        }
        t = later(function () { fin(0, null); }, timeout);
        return {
            abort: function () {
                cb = null;
                fin(0, null);
            }
        };
    }

    function lpOpen() {
        var lp = {
            sid: null, ack: 0, q: [], busy: false, tries: 0, fails: 0, got: false,
            req: null, timer: null, base: httpBase(curNode()), jsonp: !corsXhr || cx.jsonp
        };
        cx.lp = lp;
        debug('long-polling', lp.base, lp.jsonp ? '(JSONP)' : '');
        lp.req = http('GET', lp.base + '/lp/open?' + authParams(queryValue), null, lp.jsonp, LP_REQ_TIMEOUT,
            function (st, obj) {
                lp.req = null;
                if (cx.lp !== lp) { return; }
                if (st !== 200 || !obj || !obj.sid) {
                    cx.lp = null;
                    if (st === 0 && corsXhr) { cx.jsonp = !lp.jsonp; } // maybe CORS is blocked: alternate
                    if (W.WebSocket) { cx.wsFails = WS_FAILS_BEFORE_LP - 1; } // give WebSocket one more try
                    nextNode();
                    cxRetry();
                    return;
                }
                lp.sid = String(obj.sid);
                lp.ack = typeof obj.next === 'number' ? obj.next : 0;
                transportUp('lp');
                lpPoll(lp);
                scheduleProbe();
            });
    }

    function lpPoll(lp) {
        if (cx.lp !== lp) { return; }
        lp.timer = null;
        lp.req = http('GET', lp.base + '/lp/poll?sid=' + queryValue(lp.sid) + '&ack=' + lp.ack, null, lp.jsonp,
            LP_POLL_TIMEOUT, function (st, obj) {
                lp.req = null;
                if (cx.lp !== lp) { return; }
                if (st === 404 || (obj && obj.code === 404)) {
                    lpLost(lp, false);
                    return;
                }
                if (st !== 200 || !obj) {
                    if (++lp.fails > LP_POLL_RETRIES) {
                        lpLost(lp, true);
                    } else {
                        lp.timer = later(function () { lpPoll(lp); }, backoff(lp.fails - 1));
                    }
                    return;
                }
                lp.fails = 0;
                if (!lp.got) {
                    lp.got = true;
                    cx.upAt = now();
                }
                if (typeof obj.next === 'number' && obj.next > lp.ack) { lp.ack = obj.next; }
                if (obj.frames && obj.frames.length) {
                    try {
                        incomingFrames(obj.frames);
                    } catch (e) {
                        logErr('could not handle frames:', e);
                    }
                }
                lpPoll(lp);
            });
    }

    // lpLost: the session is gone (404) or unreachable; open a new one.
    function lpLost(lp, network) {
        if (cx.lp !== lp) { return; }
        cx.lp = null;
        lpEnd(lp, network);
        if (lp.got && (!network || now() - cx.upAt >= STABLE_MS)) { cx.attempt = 0; }
        if (network) {
            if (W.WebSocket) { cx.wsFails = WS_FAILS_BEFORE_LP - 1; }
            nextNode();
        }
        cxRetry();
    }

    // lpEnd stops a session's requests and keeps its unsent commands for
    // the next transport; sendClose tells the server it is over.
    function lpEnd(lp, sendClose) {
        if (lp.req) {
            lp.req.abort();
            lp.req = null;
        }
        lp.timer = cancel(lp.timer);
        var q = lp.q;
        lp.q = [];
        var keep = [];
        for (var i = lp.busy ? 1 : 0; i < q.length; i++) {
            if (!q[i].s) { keep.push(q[i].c); }
        }
        cx.out = keep.concat(cx.out);
        if (sendClose && lp.sid) {
            var url = lp.base + '/lp/close?sid=' + queryValue(lp.sid);
            var nav = W.navigator;
            var sent = false;
            try { sent = !!(nav && nav.sendBeacon && nav.sendBeacon(url, '')); } catch (e) { sent = false; }
            if (!sent && !lp.jsonp) { http('POST', url, '', false, 5000, noop); }
        }
        lp.sid = null;
    }

    // lpFlush sends queued commands one at a time, in order.
    function lpFlush(lp) {
        if (lp.busy || !lp.sid || !lp.q.length || cx.lp !== lp) { return; }
        lp.busy = true;
        var text = lp.q[0].c;
        var url = lp.base + '/lp/send?sid=' + queryValue(lp.sid);
        var done = function (st, obj) {
            lp.busy = false;
            if (cx.lp !== lp) { return; }
            if (st === 404 || (obj && obj.code === 404)) {
                lpLost(lp, false);
                return;
            }
            if (st === 0 || st >= 500) {
                if (++lp.tries <= 2) {
                    lp.timer = later(function () { lpFlush(lp); }, 1000);
                    return;
                }
            }
            lp.tries = 0;
            lp.q.shift();
            lpFlush(lp);
        };
        if (lp.jsonp) {
            http('GET', url + '&cmd=' + queryValue(text), null, true, LP_REQ_TIMEOUT, done);
        } else {
            http('POST', url, text, false, LP_REQ_TIMEOUT, done);
        }
    }

    // ------------------------------------------------------------------
    // Public API (the original's names)
    // ------------------------------------------------------------------
    function mergeOpts(opt) {
        if (!opt || typeof opt !== 'object') { return; }
        if (hasOwn.call(opt, 'user_key') && opt.user_key !== opts.user_key) { keyAt = now(); }
        for (var k in opt) {
            if (hasOwn.call(opt, k)) { opts[k] = opt[k]; }
        }
        if (opt.nodes) {
            opts.nodeList = opt.nodes;
        } else if (opt.node) {
            opts.nodeList = opt.node;
        }
    }

    function resetSeqState() {
        lastSeq = dict();
        logWin = dict();
        recs = dict();
        recMark = null;
    }

    var api = {
        version: API_VERSION,
        impl: IMPL,
        LogLevel: parseInt(lsGet(LOG_KEY), 10) || 0,

        /**
         * start connects (or joins the tab holding this browser's connection).
         * opt: dev_id, user_id, user_key, node (string or array), nodes, wss,
         * roundrobin; extras: uuid, shareTabs (false = own connection).
         * callBack, if given, runs once the connection is established.
         */
        start: function (opt, callBack) {
            if (typeof callBack === 'function') { startCbs.push(callBack); }
            if (tab.started) {
                // Started already: reconnect only when something changed.
                var key = opts.user_key;
                var scope = tab.scope;
                mergeOpts(opt);
                if (scopeOf() === scope && opts.user_key === key) {
                    if (tab.connected) { runStartCbs(); } // connected already: now
                    return true;
                }
                return api.restart();
            }
            mergeOpts(opt);
            tab.started = true;
            tab.hidden = false;
            join();
            return true;
        },

        /** restart reconnects, with changed options if given. */
        restart: function (opt) {
            if (!tab.started) { return api.start(opt); }
            mergeOpts(opt);
            if (scopeOf() !== tab.scope) {
                leave();
                resetSeqState();
                join();
            } else if (tab.leader === true) {
                reconnect();
            } else if (tab.leader === false && tab.leaderId) {
                post({ t: 'rst', k: typeof opts.user_key === 'string' ? opts.user_key : undefined });
            }
            return true;
        },

        /** stop disconnects this tab; other tabs keep their connection. */
        stop: function () {
            if (!tab.started) { return false; }
            tab.started = false;
            leave();
            resetSeqState();
            cx.out = [];
            cx.pubs = [];
            tab.pending = [];
            return true;
        },

        /**
         * subscription(name, cb) adds a callback; returns its id, or false.
         * name: "pipe", "pipe.event", "#pipe" (delivery reports), "msg",
         * "msg.event", "" (everything); or a function alone (everything).
         */
        subscription: function (name, cb) {
            if (typeof name === 'function') {
                cb = name;
                name = '';
            }
            if (name === undefined || name === null) { return false; }
            name = String(name);
            if (typeof cb !== 'function') { cb = noop; }
            var key = name;
            var pipe = null;
            if (name !== '') {
                if (name.length < 2) {
                    logErr('pipe name too short:', name);
                    return false;
                }
                if (name.charAt(0) === '#') {
                    key = '_answer_to_' + name.substr(1);
                } else if (!(name === 'msg' || name.indexOf('msg.') === 0 || /^_?answer_to_/.test(name))) {
                    pipe = splitName(name).pipe;
                    if (!PIPE_RE.test(pipe)) {
                        logErr('invalid pipe name (2..64 of A-Z a-z 0-9 _ -):', name);
                        pipe = null;
                    }
                }
            }
            var id = 'sub' + (++subCount) + '_' + randStr(6);
            subById[id] = { key: key, pipe: pipe };
            (subs[key] || (subs[key] = [])).push({ id: id, cb: cb });
            if (pipe) { addPipe(pipe); }
            return id;
        },

        /** unsubscription removes one callback by the id subscription returned. */
        unsubscription: function (id) {
            var s = typeof id === 'string' && hasOwn.call(subById, id) ? subById[id] : null;
            if (!s) { return false; }
            delete subById[id];
            var list = subs[s.key] || [];
            for (var i = 0; i < list.length; i++) {
                if (list[i].id === id) {
                    list.splice(i, 1);
                    break;
                }
            }
            if (!list.length) { delete subs[s.key]; }
            if (s.pipe) { dropPipe(s.pipe); }
            return true;
        },

        /** unsubscriptionAll removes every callback of this tab. */
        unsubscriptionAll: function () {
            for (var id in subById) {
                if (hasOwn.call(subById, id)) { api.unsubscription(id); }
            }
            return true;
        },

        /**
         * web_pipe_send(pipe, event, msg) or web_pipe_send("pipe.event", msg)
         * publishes to a web_* (or webauth_*) pipe; msg is sent as JSON.
         */
        /**
         * send_msg sends one raw command line to the server, as the
         * original's public send_msg does (e.g. "user_status\n12").
         * Subscriptions are better made with subscription(): a raw
         * subscription command is replaced by the next pipe list sent.
         */
        send_msg: function (text) {
            if (text === undefined || text === null) { return false; }
            return routeCmd(String(text));
        },

        web_pipe_send: function (pipe, event, msg) {
            if (msg === undefined) {
                msg = event;
                event = 'undefined'; // the original's event name when none is given
                var n = splitName(String(pipe));
                if (n.event !== null) {
                    pipe = n.pipe;
                    event = n.event;
                }
            }
            if (msg === undefined) { return false; }
            pipe = String(pipe);
            if (!/^@?web(auth)?_/.test(pipe)) {
                logErr('web_pipe_send: the pipe must start with web_ or webauth_:', pipe);
                return false;
            }
            var text;
            try {
                text = JSON.stringify(msg);
            } catch (e) {
                logErr('web_pipe_send: the message cannot be turned into JSON:', e);
                return false;
            }
            if (text === undefined) { return false; }
            return routeCmd('web_pipe2\n' + pipe + '\n' + event + '\n*\n' + text);
        },

        /**
         * get_pipe_log(pipe, cb) asks for the pipe's stored history; the
         * messages arrive with server_info.history = true. cb, if given, is
         * subscribed to the pipe.
         */
        get_pipe_log: function (name, cb) {
            if (!name) {
                logErr('get_pipe_log: a pipe name is required');
                return false;
            }
            name = String(name);
            var pipe = splitName(name).pipe;
            if (!PIPE_RE.test(pipe)) {
                logErr('get_pipe_log: invalid pipe name:', name);
                return false;
            }
            if (typeof cb === 'function') { api.subscription(name, cb); }
            openLogWindow(pipe);
            return routeCmd('pipe_log\n' + pipe + '\n' + makeMarker() + '\n');
        },

        /** count_users_in_pipe(pipe, cb): cb gets data.user_in_pipe. */
        count_users_in_pipe: function (pipe, cb) {
            if (typeof cb !== 'function' || !pipe) { return false; }
            return routeCmd('pipe_count\n' + pipe + '\n' + registerOnce(cb) + '\n');
        },

        /** getTrackPipeUsers(pipe, cb): cb gets data = [{user_id, uuid}, ...]. */
        getTrackPipeUsers: function (pipe, cb) {
            if (!/^track_/.test(String(pipe))) {
                logErr('getTrackPipeUsers: the pipe must start with track_:', pipe);
                return false;
            }
            if (typeof cb !== 'function') { return false; }
            return routeCmd('track_pipe_users\n' + pipe + '\n' + registerOnce(cb));
        },

        /** getUserData(user_id, cb): cb gets data = {user_id, user_data}. */
        getUserData: function (userId, cb) {
            if (!userId || /[^0-9]/.test(String(userId))) {
                logErr('getUserData: user_id must be a positive integer:', userId);
                return false;
            }
            if (typeof cb !== 'function') { return false; }
            return routeCmd('user_data\n' + registerOnce(cb) + '\n' + userId);
        },

        /** onAuthSuccess(cb): cb runs whenever the status becomes authorized. */
        onAuthSuccess: function (cb) {
            if (typeof cb === 'function') { authCbs.ok.push(cb); }
        },

        /** onAuthFalill(cb) (sic, the original's name): status became not authorized. */
        onAuthFalill: function (cb) {
            if (typeof cb === 'function') { authCbs.fail.push(cb); }
        },

        /** isAuthorized: undefined until the server answered, then true or false. */
        isAuthorized: function () { return authorized; },

        /** isMaster: true in the tab holding the connection; undefined before start. */
        isMaster: function () { return tab.leader; },

        /** isConnected: whether this browser's connection is up. */
        isConnected: function () { return tab.connected; },

        /** getTransport: "ws", "lp" or null (in the tab holding the connection). */
        getTransport: function () { return tab.leader === true ? cx.tr : null; },

        getUUID: getUUID,
        getUserId: function () { return opts.user_id; },
        getUserKey: function () { return opts.user_key; },
        getDevId: function () { return opts.dev_id; },
        isUseWss: function () { return isSecure(); },
        getLogLevel: function () { return api.LogLevel; },
        setLogLevel: function (level) {
            api.LogLevel = parseInt(level, 10) || 0;
            lsSet(LOG_KEY, String(api.LogLevel));
        },

        /** sendStatistics is accepted for compatibility and does nothing. */
        sendStatistics: function () { return true; }
    };
    api.onAuthFail = api.onAuthFalill;

    // Internals for the unit tests; not part of the API.
    api._cometql = {
        splitName: splitName,
        parseFrames: parseFrames,
        parseData: parseData,
        backoff: backoff,
        wsUrl: function () { return wsUrl(curNode()); },
        handleFrame: handleFrame,
        state: function () {
            return {
                tab: tab, cx: cx, lastSeq: lastSeq, recs: recs, pipes: pipeOrder.slice(),
                union: unionPipes(), out: cx.out.slice(), pending: tab.pending.slice()
            };
        }
    };

    // ------------------------------------------------------------------
    // Page life cycle
    // ------------------------------------------------------------------
    if (W.addEventListener) {
        W.addEventListener('pagehide', function () {
            if (tab.started && !tab.hidden) {
                tab.hidden = true;
                leave();
            }
        });
        W.addEventListener('pageshow', function (e) {
            if (e && e.persisted && tab.started && tab.hidden) {
                tab.hidden = false;
                join();
            }
        });
        W.addEventListener('online', function () {
            if (tab.leader === true && cx.on && !cx.ready && cx.timer) {
                cx.timer = cancel(cx.timer);
                cx.attempt = 0;
                cxOpen();
            }
        });
    }

    // ------------------------------------------------------------------
    // The tab signal bus of the original client: comet_server_signal(),
    // window.tabSignal and the _tabSignal constructor. Pages use it to pass
    // events between their own code and to the browser's other tabs.
    // ------------------------------------------------------------------
    function TabSignal(opt) {
        var self = this;
        var slots = dict();   // signal -> slot name -> function
        var memState = dict(); // states when localStorage is unavailable
        var seq = 0;
        var bus = null; // makeBus
        self.debug = false;
        self.tabUUID = randStr(16);
        self.eventKey = (opt && opt.eventKey) || self.tabUUID;

        self.getTabUUID = function () { return self.tabUUID; };
        self.setEventKey = function (key) {
            self.eventKey = key;
            openBus();
        };
        self.getEventKey = function () { return self.eventKey; };

        // connect(signal, fn) or connect(slot, signal, fn); returns the slot.
        self.connect = function (slot, signal, fn) {
            if (fn === undefined) {
                fn = signal;
                signal = slot;
                slot = 'sig' + (seq++);
            }
            if (typeof fn !== 'function') { return false; }
            if (!slots[signal]) { slots[signal] = dict(); }
            slots[signal][slot] = fn;
            return slot;
        };

        self.disconnect = function (slot, signal) {
            if (slots[signal] && slots[signal][slot]) {
                delete slots[signal][slot];
                return true;
            }
            return false;
        };

        // emit calls the signal's slots in this tab with (param, signal,
        // fromOtherTab).
        self.emit = function (signal, param, fromOtherTab) {
            var list = slots[signal];
            if (!list) { return; }
            for (var k in list) {
                if (hasOwn.call(list, k)) {
                    try {
                        list[k](param, signal, fromOtherTab === true);
                    } catch (e) {
                        logErr('error in a tabSignal slot:', e);
                    }
                }
            }
        };
        self.send_emit = self.emit; // as the original 4.08: this tab only

        // emitAll emits in this tab and in the browser's other tabs.
        self.emitAll = function (signal, param) {
            self.emit(signal, param);
            if (!bus) { return false; }
            bus.post({ name: signal, param: param });
            return true;
        };

        function stateKey(name) { return 'tabSignal_' + self.eventKey + name; }

        // setState stores a value shared by the tabs; with minTime, a value
        // another tab wrote less than minTime ms ago is kept instead.
        self.setState = function (name, value, minTime) {
            var t = now();
            var old = readState(name);
            if (minTime && old && old.time + minTime > t && old.tabUUID !== self.tabUUID) {
                return false;
            }
            var v = JSON.stringify({ time: t, value: value, tabUUID: self.tabUUID });
            if (!lsSet(stateKey(name), v)) { memState[stateKey(name)] = v; }
            return true;
        };

        // getState reads a shared value; with maxTime, only one younger
        // than maxTime ms.
        self.getState = function (name, maxTime) {
            var st = readState(name);
            if (!st) { return undefined; }
            if (maxTime && st.time + maxTime <= now()) { return undefined; }
            return st.value;
        };

        // intervalUpdateState keeps a state fresh (every minTime/3 ms) so
        // that other tabs do not overwrite it; returns the interval id.
        self.intervalUpdateState = function (name, value, minTime) {
            if (!self.setState(name, value, minTime)) { return undefined; }
            return W.setInterval(function () { self.setState(name, value, minTime); }, minTime / 3);
        };

        function readState(name) {
            var raw = lsGet(stateKey(name)) || memState[stateKey(name)];
            if (!raw) { return null; }
            try {
                var st = JSON.parse(raw);
                return st && typeof st === 'object' ? st : null;
            } catch (e) {
                return null;
            }
        }

        function deliver(msg) {
            if (msg && typeof msg === 'object' && msg.name !== undefined) {
                self.emit(msg.name, msg.param, true);
            }
        }

        // openBus joins the other tabs' signals of this event key.
        function openBus() {
            if (bus) { bus.close(); }
            bus = makeBus('cometql-tabsignal:' + self.eventKey, deliver);
        }
        openBus();
    }

    if (!W._tabSignal) { W._tabSignal = TabSignal; }
    if (!W.tabSignal) { W.tabSignal = new W._tabSignal({ eventKey: 'tabSignal_storage_emit' }); }
    if (!W.comet_server_signal) { W.comet_server_signal = function () { return W.tabSignal; }; }
    api.tabSignal = new TabSignal();

    W.cometApi = api;
    W.CometServer = function () { return api; };
    // The original also exposed a constructor; here it hands out the same object.
    W.cometServerApi = function () { return api; };
}(typeof window !== 'undefined' ? window : this));
