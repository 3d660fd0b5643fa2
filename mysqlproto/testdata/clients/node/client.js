// Runs Node's mysql2 against a CometQL test server: its own escaping
// (query with ? placeholders, escape()) and its own server-side prepared
// statements (execute), then reads every value back.
// Environment: COMETQL_HOST, COMETQL_PORT, COMETQL_USER, COMETQL_PASSWORD,
// COMETQL_VALUES (a JSON array of strings). Prints "ok" and exits 0 when
// everything came back byte-equal.
'use strict';
const mysql = require('mysql2/promise');

async function main() {
  const values = JSON.parse(process.env.COMETQL_VALUES);
  const failures = [];
  const check = (label, got, want) => {
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      failures.push(`${label}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    }
  };
  const conn = await mysql.createConnection({
    host: process.env.COMETQL_HOST,
    port: Number(process.env.COMETQL_PORT),
    user: process.env.COMETQL_USER,
    password: process.env.COMETQL_PASSWORD,
    database: 'CometQL_v1',
    charset: 'utf8mb4',
  });
  const col = (rows) => rows.map((r) => Object.values(r)[0]);

  await conn.query("INSERT INTO pipes_settings (name, length) VALUES ('node_pipe', 100)");
  for (const [i, v] of values.entries()) {
    const [ok] = await conn.query('INSERT INTO pipes_messages (name, event, message) VALUES (?, ?, ?)', ['node_pipe', 'esc', v]);
    check('affected', ok.affectedRows, 1);
    check('info', ok.info, 'Delivered: 0');
    const [okx] = await conn.execute('INSERT INTO pipes_messages (name, event, message) VALUES (?, ?, ?)', ['node_pipe', 'exec', v]);
    check('execute info', [okx.affectedRows, okx.info], [1, 'Delivered: 0']);
    await conn.query('INSERT INTO users_messages (id, event, message) VALUES (51, ' + conn.escape('esc') + ', ' + conn.escape(v) + ')');
    await conn.execute('INSERT INTO users_messages (id, event, message) VALUES (?, ?, ?)', [52, 'exec', v]);
    await conn.query('INSERT INTO users_data (id, data) VALUES (?, ?)', [5100 + i, v]);
    await conn.execute('INSERT INTO users_data (id, data) VALUES (?, ?)', [5200 + i, v]);
  }
  check('history esc', col((await conn.query("SELECT message FROM pipes_messages WHERE name = 'node_pipe' AND event = 'esc'"))[0]), values);
  check('history exec', col((await conn.execute('SELECT message FROM pipes_messages WHERE name = ? AND event = ?', ['node_pipe', 'exec']))[0]), values);
  check('queue esc', col((await conn.query('SELECT message FROM users_messages WHERE id = 51'))[0]), values);
  check('queue exec', col((await conn.execute('SELECT message FROM users_messages WHERE id = ?', [52]))[0]), values);
  check('data esc', col((await conn.query('SELECT data FROM users_data WHERE id >= 5100 AND id < 5200 ORDER BY id'))[0]), values);
  check('data exec', col((await conn.execute('SELECT data FROM users_data WHERE id >= ? AND id < ? ORDER BY id', [5200, 5300]))[0]), values);
  const [typed] = await conn.execute('SELECT id, data FROM users_data WHERE id = ?', [5200]);
  check('typed row', [typed[0].id, typed[0].data], [5200, values[0]]);
  try {
    await conn.execute('INSERT INTO users_auth (id, hash) VALUES (?, ?)', [1, 'bad hash']);
    failures.push('bad hash accepted');
  } catch (e) {
    check('error', [e.errno, e.sqlState], [1366, 'HY000']);
  }
  check('after error', col((await conn.query("SELECT 'alive' AS a"))[0]), ['alive']);
  await conn.end();
  if (failures.length) {
    process.stderr.write(failures.join('\n') + '\n');
    process.exit(1);
  }
  process.stdout.write('ok\n');
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + '\n');
  process.exit(1);
});
