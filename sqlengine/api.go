// Package sqlengine implements the CometQL dialect: it parses statements with
// a real MySQL-grammar parser (TiDB's), translates them into a small set of
// statement types, executes them against the virtual tables (which drive the
// pipes hub and auth), and returns engine-neutral results or typed MySQL
// errors (*mysql.MyError from go-mysql).
//
// The dialect (SPEC 2.2-2.4):
//
//   - INSERT/REPLACE ... VALUES (multi-row, column list optional, INSERT ...
//     SET), SELECT over one table or none, DELETE; WHERE with = != <> < > <=
//     >= <=> IN, NOT IN, LIKE [ESCAPE], BETWEEN, IS [NOT] NULL/TRUE/FALSE,
//     AND OR XOR NOT, arithmetic; ORDER BY (columns, aliases, positions),
//     LIMIT n / off,n / n OFFSET off; COUNT, MIN, MAX (also inside
//     expressions); ? placeholders in prepared statements.
//   - Comparisons follow MySQL's type rules (two strings as strings, two
//     integers as integers, anything else as numbers: 'abc' = 0 is true) with
//     binary string comparison (utf8mb4_bin): keys are case-sensitive in the
//     hub, so = and LIKE are too. NULL is three-valued.
//   - A key condition among the top-level AND terms of WHERE (name = / IN on
//     pipe tables, id = / IN on user tables, token = / IN) is pushed down to
//     the hub or auth; the whole WHERE is then applied to the rows.
//   - A multi-row INSERT is validated completely before anything is applied.
//   - Housekeeping: SET (user variables kept, system variables accepted and
//     ignored), SELECT @@var / functions, SHOW ..., DESCRIBE, USE,
//     BEGIN/COMMIT/ROLLBACK (no transactional meaning).
//   - Everything else is 1235 (unsupported, naming the construct) or 1064.
//
// The hot statement, a single-row INSERT INTO pipes_messages with string
// literals, skips the parser through a hand-written scanner that is tested
// and fuzzed against it (fastpath.go).
package sqlengine

import "time"

// ColumnType is the MySQL type a result column is announced with.
type ColumnType uint8

const (
	// TypeBigInt is a signed 64-bit integer column (MYSQL_TYPE_LONGLONG).
	TypeBigInt ColumnType = iota + 1
	// TypeInt is a signed 32-bit integer column (MYSQL_TYPE_LONG).
	TypeInt
	// TypeVarChar is a short text column (MYSQL_TYPE_VAR_STRING, utf8mb4).
	TypeVarChar
	// TypeText is a long text column (MYSQL_TYPE_BLOB with the utf8mb4
	// charset, as MySQL announces TEXT).
	TypeText
)

// Column describes one result column.
type Column struct {
	Name   string
	Type   ColumnType
	Length uint32 // display length in characters (0: the type's default)
	// Table is the virtual table the column belongs to ("" for computed
	// columns such as COUNT(*) or @@version).
	Table string
	// Nullable is true when the column may hold NULL.
	Nullable bool
}

// Result is the outcome of one statement: a result set when Columns is
// non-nil (Rows hold nil, int64 or string values, one per column), else an
// OK packet with AffectedRows, LastInsertID and Info.
type Result struct {
	Columns      []Column
	Rows         [][]any
	AffectedRows uint64
	LastInsertID uint64
	Info         string // e.g. "Delivered: 37"
	Warnings     uint16
}

// IsResultSet reports whether r carries rows (possibly zero of them).
func (r *Result) IsResultSet() bool { return r != nil && r.Columns != nil }

// Process is one CometQL connection as SHOW PROCESSLIST lists it.
type Process struct {
	ID      uint32
	User    string
	Host    string
	DB      string // "" when none selected
	Command string // "Query" or "Sleep"
	Time    int64  // seconds in the current state
	Info    string // the running statement, "" when idle
}

// Frontend is what the engine asks of the wire-protocol front end
// (mysqlproto) for SHOW PROCESSLIST and SHOW STATUS.
type Frontend interface {
	// Processes lists the open CometQL connections of a tenant.
	Processes(dev int64) []Process
	// ConnectionCount is the number of open CometQL connections (all
	// tenants).
	ConnectionCount() int
}

// Limits are what a front end enforces and the engine reports as system
// variables. A Frontend that also has a method Limits() Limits overrides
// the corresponding Config fields.
type Limits struct {
	MaxAllowedPacket int64         // @@max_allowed_packet
	IdleTimeout      time.Duration // @@wait_timeout, @@interactive_timeout
	MaxConnections   int           // @@max_connections
	TLS              bool          // @@have_ssl
}
