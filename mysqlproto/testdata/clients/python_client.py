"""Runs PyMySQL against a CometQL test server: its own escaping (client-side
parameters) and the escape_string helper, then reads every value back.

Environment: COMETQL_HOST, COMETQL_PORT, COMETQL_USER, COMETQL_PASSWORD,
COMETQL_VALUES (a JSON array of strings). Prints "ok" and exits 0 when
everything came back byte-equal. (PyMySQL has no server-side prepared
statements.)
"""
import json
import os
import sys

import pymysql

values = json.loads(os.environ["COMETQL_VALUES"])
conn = pymysql.connect(
    host=os.environ["COMETQL_HOST"],
    port=int(os.environ["COMETQL_PORT"]),
    user=os.environ["COMETQL_USER"],
    password=os.environ["COMETQL_PASSWORD"],
    database="CometQL_v1",
    charset="utf8mb4",
    autocommit=True,
)
failures = []


def check(label, got, want):
    if got != want:
        failures.append("%s: got %r, want %r" % (label, got, want))


def column(cur, sql, args=None):
    cur.execute(sql, args)
    return [row[0] for row in cur.fetchall()]


with conn.cursor() as cur:
    cur.execute("INSERT INTO pipes_settings (name, length) VALUES ('py_pipe', 100)")
    for i, v in enumerate(values):
        n = cur.execute("INSERT INTO pipes_messages (name, event, message) VALUES (%s, %s, %s)", ("py_pipe", "param", v))
        check("affected", n, 1)
        cur.execute("INSERT INTO pipes_messages (name, event, message) VALUES ('py_pipe', 'esc', '%s')" % conn.escape_string(v))
        cur.execute("INSERT INTO users_messages (id, event, message) VALUES (%s, %s, %s)", (41, "param", v))
        cur.execute("INSERT INTO users_data (id, data) VALUES (%s, %s)", (4100 + i, v))
        cur.execute("REPLACE INTO users_data (id, data) VALUES (%d, %s)" % (4200 + i, conn.escape(v)))
    check("history param", column(cur, "SELECT message FROM pipes_messages WHERE name = %s AND event = %s", ("py_pipe", "param")), values)
    check("history esc", column(cur, "SELECT message FROM pipes_messages WHERE name = 'py_pipe' AND event = 'esc'"), values)
    check("queue", column(cur, "SELECT message FROM users_messages WHERE id = %s", (41,)), values)
    check("data param", column(cur, "SELECT data FROM users_data WHERE id >= 4100 AND id < 4200 ORDER BY id"), values)
    check("data escape", column(cur, "SELECT data FROM users_data WHERE id >= 4200 AND id < 4300 ORDER BY id"), values)
    for v in values:
        check("where", column(cur, "SELECT data FROM users_data WHERE id < 4200 AND data = %s", (v,)), [v])
    cur.execute("SELECT id, data FROM users_data WHERE id = 4100")
    row = cur.fetchone()
    check("types", (type(row[0]), type(row[1])), (int, str))
    try:
        cur.execute("SELECT * FROM no_such_table")
        failures.append("unknown table accepted")
    except pymysql.MySQLError as e:
        check("error code", e.args[0], 1146)
    check("after error", column(cur, "SELECT 'alive'"), ["alive"])
conn.close()

if failures:
    sys.stderr.write("\n".join(failures) + "\n")
    sys.exit(1)
print("ok")
