// The cometql chat demo. Open /demo/ in two windows and talk; a backend can
// post into the same chat with one CometQL INSERT (the page shows how).
//
//   web_demo_chat    the chat: browsers publish with web_pipe_send, the
//                    server reports to the sender how many connections got it
//   track_demo_room  who is online: the server announces joins and leaves
//
// Query parameters user_id and user_key start the page as an authorized
// user (the key being what a backend stored in users_auth); private messages
// (users_messages) to that user then show up in the chat.
//
// Everything shown is set with textContent: nothing a user or a backend
// sends is ever parsed as HTML.
(function () {
    'use strict';

    var CHAT = 'web_demo_chat';
    var ROOM = 'track_demo_room';
    var NAME_KEY = 'cometql_demo_name';

    var api = window.cometApi;
    var params = new URLSearchParams(location.search);
    var userId = /^[1-9][0-9]{0,15}$/.test(params.get('user_id') || '') ? Number(params.get('user_id')) : 0;
    var userKey = params.get('user_key') || '';
    // The server's address: this page's host, plus a prefix such as
    // /comet-server when the server sits behind one.
    var node = location.host + location.pathname.replace(/\/demo\/.*$/, '');

    var $ = function (id) { return document.getElementById(id); };
    var list = $('messages');
    var pending = Object.create(null); // id of a message we sent -> its status element
    var shown = Object.create(null);    // ids of messages on the page
    var members = Object.create(null);  // "uuid user_id" -> {uuid, user_id, n}
    var lastHistory = null;             // the newest history message shown

    function el(tag, cls, text) {
        var e = document.createElement(tag);
        if (cls) { e.className = cls; }
        if (text !== undefined && text !== null) { e.textContent = String(text); }
        return e;
    }

    function clock() {
        return new Date().toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    }

    function parseJSON(s) {
        try { return JSON.parse(s); } catch (e) { return null; }
    }

    // ---- Messages

    // addMessage shows one message: {name, text, meta, kind, id} and returns
    // its status line. History (replayed oldest first) goes above the live
    // messages that may have arrived before it.
    function addMessage(m) {
        if (m.id) {
            if (shown[m.id]) { return null; }
            shown[m.id] = true;
        }
        var li = el('li', 'msg ' + m.kind);
        var head = el('div', 'head');
        var meta = el('span', 'meta', m.meta);
        head.appendChild(el('span', 'who', m.name));
        head.appendChild(meta);
        li.appendChild(head);
        li.appendChild(el('div', 'text', m.text));
        var atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
        if (m.kind === 'history') {
            list.insertBefore(li, lastHistory ? lastHistory.nextSibling : list.firstChild);
            lastHistory = li;
        } else {
            list.appendChild(li);
        }
        $('empty').hidden = true;
        if (atBottom || m.kind === 'own') { list.scrollTop = list.scrollHeight; }
        return meta;
    }

    // fromChat turns what arrived on the chat pipe into a message. Browsers
    // send {name, text, id}; a backend may send that too, or any text.
    function fromChat(e) {
        var d = e.data;
        var info = e.server_info;
        var name = '';
        var text;
        var id = null;
        if (d && typeof d === 'object' && !Array.isArray(d)) {
            name = typeof d.name === 'string' ? d.name.trim().slice(0, 40) : '';
            text = typeof d.text === 'string' ? d.text : JSON.stringify(d);
            id = typeof d.id === 'string' ? d.id : null;
        } else {
            text = typeof d === 'string' ? d : JSON.stringify(d);
        }
        var meta = [info.history ? 'earlier' : clock()];
        if (info.event && info.event !== 'message') { meta.push('event ' + info.event); }
        if (info.user_id) { meta.push('user_id ' + info.user_id); }
        return {
            name: name || (info.user_id ? 'user ' + info.user_id : 'anonymous'),
            text: text,
            meta: meta.join(' · '),
            kind: info.history ? 'history' : 'live',
            id: id
        };
    }

    api.subscription(CHAT, function (e) {
        addMessage(fromChat(e));
    });

    // The delivery report of each message this page sent.
    api.subscription('#' + CHAT, function (e) {
        var d = e.data || {};
        var sent = typeof d.message === 'string' ? parseJSON(d.message) : null;
        var status = sent && pending[sent.id];
        if (!status) { return; }
        delete pending[sent.id];
        var n = Number(d.number_messages) || 0;
        status.textContent = clock() + ' · delivered to ' + n + (n === 1 ? ' connection' : ' connections');
    });

    $('send').addEventListener('submit', function (ev) {
        ev.preventDefault();
        var input = $('text');
        var text = input.value.trim();
        if (!text) { return; }
        var msg = { name: myName(), text: text, id: Date.now().toString(36) + Math.random().toString(36).slice(2, 8) };
        if (!api.web_pipe_send(CHAT, 'message', msg)) {
            addMessage({ name: 'error', text: 'could not send', meta: clock(), kind: 'error' });
            return;
        }
        pending[msg.id] = addMessage({ name: msg.name, text: text, meta: clock() + ' · sending…', kind: 'own', id: msg.id });
        input.value = '';
        input.focus();
    });

    // Private messages (users_messages), for pages started with user_id/user_key.
    api.subscription('msg', function (e) {
        var d = e.data;
        addMessage({
            name: 'private' + (e.server_info.event ? ' · ' + e.server_info.event : ''),
            text: typeof d === 'string' ? d : JSON.stringify(d),
            meta: clock(),
            kind: 'private'
        });
    });

    // ---- Name

    function myName() {
        return $('name').value.trim().slice(0, 40) || 'guest';
    }
    var saved = null;
    try { saved = localStorage.getItem(NAME_KEY); } catch (e) { /* private mode */ }
    $('name').value = saved || 'guest-' + api.getUUID().slice(0, 4);
    $('name').addEventListener('input', function () {
        try { localStorage.setItem(NAME_KEY, myName()); } catch (e) { /* private mode */ }
    });

    // ---- Who is online

    function memberKey(m) { return m.uuid + ' ' + m.user_id; }

    function renderMembers() {
        var ul = $('members');
        var keys = Object.keys(members).sort();
        ul.textContent = '';
        for (var i = 0; i < keys.length; i++) {
            var m = members[keys[i]];
            var li = el('li');
            var uuid = el('code', 'uuid', m.uuid.slice(0, 8) + '…');
            uuid.title = m.uuid;
            li.appendChild(uuid);
            li.appendChild(el('span', 'uid', m.user_id ? 'user_id ' + m.user_id : 'guest (user_id 0)'));
            if (m.uuid === api.getUUID()) { li.appendChild(el('span', 'you', 'you')); }
            ul.appendChild(li);
        }
        $('online-count').textContent = keys.length ? String(keys.length) : '';
    }

    function member(d) {
        return d && typeof d === 'object' ? { uuid: String(d.uuid || ''), user_id: Number(d.user_id) || 0 } : null;
    }

    function loadMembers() {
        api.getTrackPipeUsers(ROOM, function (e) {
            members = Object.create(null);
            var arr = Array.isArray(e.data) ? e.data : [];
            for (var i = 0; i < arr.length; i++) {
                var m = member(arr[i]);
                if (!m) { continue; }
                var k = memberKey(m);
                if (members[k]) { members[k].n++; } else { m.n = 1; members[k] = m; }
            }
            renderMembers();
        });
    }

    api.subscription(ROOM + '.subscription', function (e) {
        var m = member(e.data);
        if (!m) { return; }
        var k = memberKey(m);
        if (members[k]) { members[k].n++; } else { m.n = 1; members[k] = m; }
        renderMembers();
    });
    api.subscription(ROOM + '.unsubscription', function (e) {
        var m = member(e.data);
        if (!m) { return; }
        var k = memberKey(m);
        if (members[k] && --members[k].n <= 0) { delete members[k]; }
        renderMembers();
    });

    // ---- Connection status

    var wasConnected = false;
    function checkStatus() {
        var st = $('status');
        var up = api.isConnected();
        var text;
        if (up) {
            var tr = api.getTransport();
            text = 'online · ' + (tr === 'ws' ? 'WebSocket' : tr === 'lp' ? 'long-polling' : 'shared with another tab');
            if (userId) { text += api.isAuthorized() ? ' · user ' + userId : ' · key refused, anonymous'; }
        } else {
            text = wasConnected ? 'reconnecting…' : 'connecting…';
        }
        st.textContent = text;
        st.setAttribute('data-state', up ? 'on' : 'off');
        if (up && !wasConnected) { loadMembers(); } // first connection, or back after a drop
        wasConnected = up;
    }

    // ---- The statements a backend runs

    function showSQL() {
        var host = location.hostname.replace(/^\[|\]$/g, '');
        var cli = 'mysql -h' + host + ' -P3300 -uroot -p<password> CometQL_v1 -e ';
        var uid = userId || 1;
        // [caption, statement, shown as a whole command line]
        var rows = [
            ['Post a message into this chat',
                "INSERT INTO pipes_messages (name, event, message) VALUES ('" + CHAT +
                "', 'message', '{\\\"name\\\":\\\"backend\\\",\\\"text\\\":\\\"hello\\\"}')", true],
            ['Keep the last 100 messages: newcomers see them',
                "INSERT INTO pipes_settings (name, length) VALUES ('" + CHAT + "', 100)", true],
            ['Who is online',
                "SELECT user_id, user_uuid, ip FROM users_in_pipes WHERE name = '" + ROOM + "'"],
            ['Let user ' + uid + ' sign in: open this page with ?user_id=' + uid + '&user_key=secret' + uid,
                "INSERT INTO users_auth (id, hash) VALUES (" + uid + ", 'secret" + uid + "')"],
            ['Send user ' + uid + ' a private message (kept until they connect)',
                "INSERT INTO users_messages (id, event, message) VALUES (" + uid + ", 'note', 'hi there')"]
        ];
        var box = $('sql');
        for (var i = 0; i < rows.length; i++) {
            var text = rows[i][2] ? cli + '"' + rows[i][1] + '"' : rows[i][1];
            var fig = el('figure');
            fig.appendChild(el('figcaption', null, rows[i][0]));
            fig.appendChild(el('pre', null, text));
            if (navigator.clipboard && window.isSecureContext) {
                var b = el('button', 'copy', 'copy');
                b.type = 'button';
                b.addEventListener('click', copier(text, b));
                fig.appendChild(b);
            }
            box.appendChild(fig);
            if (i === 1) { box.appendChild(el('p', 'hint', 'More statements (same command line):')); }
        }
    }

    function copier(text, button) {
        return function () {
            navigator.clipboard.writeText(text).then(function () {
                button.textContent = 'copied';
                setTimeout(function () { button.textContent = 'copy'; }, 1500);
            }, function () { /* not allowed: the text is selectable anyway */ });
        };
    }

    // ---- Start

    showSQL();
    api.subscription(ROOM, function () {}); // join the room
    api.start({ node: node, dev_id: 0, user_id: userId, user_key: userKey });
    api.get_pipe_log(CHAT); // recent messages, when the pipe logs
    checkStatus();
    setInterval(checkStatus, 1000);
}());
