<?php
// Runs PHP's mysqli and PDO_MySQL (mysqlnd) against a CometQL test server:
// their own escaping and their own server-side prepared statements, then
// reads every value back. Environment: COMETQL_HOST, COMETQL_PORT,
// COMETQL_USER, COMETQL_PASSWORD, COMETQL_VALUES (a JSON array of strings).
// Prints "ok" and exits 0 when everything came back byte-equal.

mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);

$host = getenv('COMETQL_HOST');
$port = (int) getenv('COMETQL_PORT');
$user = getenv('COMETQL_USER');
$pass = getenv('COMETQL_PASSWORD');
$values = json_decode(getenv('COMETQL_VALUES'), true);
$failures = [];

function check($label, $got, $want) {
    global $failures;
    if ($got !== $want) {
        $failures[] = $label . ': got ' . json_encode($got) . ', want ' . json_encode($want);
    }
}

// --- mysqli ---
$m = new mysqli($host, $user, $pass, 'CometQL_v1', $port);
$m->set_charset('utf8mb4');
$m->query("INSERT INTO pipes_settings (name, length) VALUES ('php_pipe', 100)");
foreach ($values as $i => $v) {
    $e = $m->real_escape_string($v);
    $m->query("INSERT INTO pipes_messages (name, event, message) VALUES ('php_pipe', 'esc', '$e')");
    check('mysqli info', $m->info, 'Delivered: 0');
    check('mysqli affected', $m->affected_rows, 1);
    $m->query("INSERT INTO users_messages (id, event, message) VALUES (31, 'esc', '$e')");
    $m->query("INSERT INTO users_data (id, data) VALUES (" . (3100 + $i) . ", '$e')");
}
$st = $m->prepare("INSERT INTO pipes_messages (name, event, message) VALUES (?, ?, ?)");
$st2 = $m->prepare("INSERT INTO users_messages (id, event, message) VALUES (?, ?, ?)");
$st3 = $m->prepare("REPLACE INTO users_data (id, data) VALUES (?, ?)");
foreach ($values as $i => $v) {
    $pipe = 'php_pipe'; $ev = 'prep'; $uid = 32; $did = 3200 + $i;
    $st->bind_param('sss', $pipe, $ev, $v);
    $st->execute();
    $st2->bind_param('iss', $uid, $ev, $v);
    $st2->execute();
    $st3->bind_param('is', $did, $v);
    $st3->execute();
}
$col = function ($res) { $out = []; while ($row = $res->fetch_row()) { $out[] = $row[0]; } return $out; };
check('mysqli history esc', $col($m->query("SELECT message FROM pipes_messages WHERE name = 'php_pipe' AND event = 'esc'")), $values);
check('mysqli history prep', $col($m->query("SELECT message FROM pipes_messages WHERE name = 'php_pipe' AND event = 'prep'")), $values);
check('mysqli queue esc', $col($m->query("SELECT message FROM users_messages WHERE id = 31")), $values);
check('mysqli queue prep', $col($m->query("SELECT message FROM users_messages WHERE id = 32")), $values);
check('mysqli data esc', $col($m->query("SELECT data FROM users_data WHERE id >= 3100 AND id < 3200 ORDER BY id")), $values);
check('mysqli data prep', $col($m->query("SELECT data FROM users_data WHERE id >= 3200 AND id < 3300 ORDER BY id")), $values);
// Prepared SELECT: binary rows with typed columns.
$sel = $m->prepare("SELECT id, data FROM users_data WHERE id = ?");
foreach ($values as $i => $v) {
    $id = 3200 + $i;
    $sel->bind_param('i', $id);
    $sel->execute();
    $row = $sel->get_result()->fetch_row();
    check('mysqli prepared select', $row, [$id, $v]);
    check('mysqli stmt reset', $sel->reset(), true); // COM_STMT_RESET
}
// An error keeps its code and the connection.
try {
    $m->query("INSERT INTO pipes (name) VALUES ('x')");
    $failures[] = 'read-only insert succeeded';
} catch (mysqli_sql_exception $e) {
    check('mysqli error code', $e->getCode(), 1288);
    check('mysqli sqlstate', $e->getSqlState(), 'HY000');
}
check('mysqli after error', $col($m->query("SELECT 'alive'")), ['alive']);
// COM_CHANGE_USER: to tenant 3 (its own data), back to root, then a wrong
// password (1045).
$m->query("SET @v = 'gone after change_user'");
check('change_user tenant', $m->change_user(getenv('COMETQL_TENANT_USER'), getenv('COMETQL_TENANT_PASSWORD'), 'CometQL_v1'), true);
check('tenant sees no root data', $col($m->query("SELECT COUNT(*) FROM users_data")), ['0']);
check('user variables reset', $col($m->query("SELECT @v")), [null]);
check('change_user root', $m->change_user($user, $pass, 'CometQL_v1'), true);
check('root data again', $col($m->query("SELECT COUNT(*) > 0 FROM users_data")), ['1']);
try {
    $m->change_user($user, 'wrong', 'CometQL_v1');
    $failures[] = 'change_user with a wrong password succeeded';
} catch (mysqli_sql_exception $e) {
    check('change_user error', $e->getCode(), 1045);
}
$m->close();

// Persistent connections: the second "p:" connect reuses the first one
// (with COM_CHANGE_USER).
for ($i = 0; $i < 2; $i++) {
    $p = new mysqli("p:$host", $user, $pass, 'CometQL_v1', $port);
    check("persistent $i", $col($p->query("SELECT 'persistent'")), ['persistent']);
    $p->close();
}

// --- PDO, server-side prepared statements ---
$pdo = new PDO("mysql:host=$host;port=$port;dbname=CometQL_v1;charset=utf8mb4", $user, $pass, [
    PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
    PDO::ATTR_EMULATE_PREPARES => false,
]);
$ins = $pdo->prepare("INSERT INTO pipes_messages (name, event, message) VALUES (?, ?, ?)");
$insq = $pdo->prepare("INSERT INTO users_messages (id, event, message) VALUES (?, ?, ?)");
$insd = $pdo->prepare("INSERT INTO users_data (id, data) VALUES (:id, :data)");
foreach ($values as $i => $v) {
    $ins->execute(['php_pipe', 'pdo', $v]);
    $insq->execute([33, 'pdo', $v]);
    $insd->execute([':id' => 3300 + $i, ':data' => $v]);
    // PDO::quote is PDO's own escaping.
    $pdo->exec("INSERT INTO users_data (id, data) VALUES (" . (3400 + $i) . ", " . $pdo->quote($v) . ")");
}
$q = function ($sql, $args = []) use ($pdo) {
    $s = $pdo->prepare($sql);
    $s->execute($args);
    return $s->fetchAll(PDO::FETCH_COLUMN, 0);
};
check('pdo history', $q("SELECT message FROM pipes_messages WHERE name = ? AND event = ?", ['php_pipe', 'pdo']), $values);
check('pdo queue', $q("SELECT message FROM users_messages WHERE id = ?", [33]), $values);
check('pdo data', $q("SELECT data FROM users_data WHERE id >= ? AND id < ? ORDER BY id", [3300, 3400]), $values);
check('pdo data quote', $q("SELECT data FROM users_data WHERE id >= ? AND id < ? ORDER BY id", [3400, 3500]), $values);
$ids = $q("SELECT id FROM users_data WHERE id = ?", [3300]);
check('pdo integer column', $ids, [3300]);
try {
    $pdo->prepare("SELECT nope FROM pipes")->execute();
    $failures[] = 'unknown column accepted';
} catch (PDOException $e) {
    check('pdo error', $e->errorInfo[1] ?? null, 1054);
    check('pdo sqlstate', $e->errorInfo[0] ?? null, '42S22');
}

if ($failures) {
    fwrite(STDERR, implode("\n", $failures) . "\n");
    exit(1);
}
echo "ok\n";
