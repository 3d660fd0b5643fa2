package sqlengine

import (
	"strings"

	"github.com/cometql/cometql/auth"
)

// DatabaseName is the one database CometQL has.
const DatabaseName = "CometQL_v1"

// tableID names a virtual table.
type tableID uint8

const (
	tPipesMessages tableID = iota
	tPipes
	tUsersInPipes
	tPipesSettings
	tUsersMessages
	tUsersTime
	tUsersAuth
	tUsersData
	tRevokedTokens
)

// colDef is a column of a virtual table.
type colDef struct {
	name     string
	typ      ColumnType
	length   uint32 // characters for VARCHAR, display width for integers
	nullable bool
	sqlType  string // as SHOW COLUMNS shows it
	// required columns must be given on INSERT (1364 otherwise).
	required bool
	// ignored columns are accepted on INSERT and not used.
	ignored bool
	comment string
}

// tableDef is a virtual table: its columns in SELECT * order, its key
// (the column SELECT and DELETE usually filter by, pushed down to the hub)
// and what it allows.
type tableDef struct {
	id      tableID
	name    string
	cols    []colDef
	key     int  // index of the key column
	intKey  bool // the key is an integer (user id)
	primary bool // the key is a primary key: REPLACE INTO is allowed
	// readOnly tables refuse INSERT and DELETE (1288).
	readOnly bool
	comment  string
}

func (t *tableDef) colIndex(name string) int {
	for i := range t.cols {
		if strings.EqualFold(t.cols[i].name, name) {
			return i
		}
	}
	return -1
}

func varchar(name string, n uint32, comment string) colDef {
	return colDef{name: name, typ: TypeVarChar, length: n, sqlType: "varchar(" + itoa(int64(n)) + ")", comment: comment}
}

func bigint(name, comment string) colDef {
	return colDef{name: name, typ: TypeBigInt, length: 20, sqlType: "bigint", comment: comment}
}

func intcol(name, comment string) colDef {
	return colDef{name: name, typ: TypeInt, length: 11, sqlType: "int", comment: comment}
}

func text(name, comment string) colDef {
	return colDef{name: name, typ: TypeText, length: 65535, sqlType: "text", comment: comment}
}

func req(c colDef) colDef { c.required = true; return c }
func ign(c colDef) colDef { c.ignored = true; return c }
func null(c colDef) colDef {
	c.nullable = true
	return c
}

// Length limits of values (SPEC 2.3).
const (
	maxPipeChars  = 64
	maxEventChars = 64
	maxHashChars  = auth.MaxHashLen
	maxTokenBytes = auth.MaxTokenLen
)

var tables = []*tableDef{
	{
		id: tPipesMessages, name: "pipes_messages", key: 2,
		comment: "publish to a pipe (INSERT); its stored history (SELECT, DELETE)",
		cols: []colDef{
			ign(varchar("id", 64, "message id")),
			ign(bigint("time", "unix time the message was stored")),
			req(varchar("name", maxPipeChars, "pipe name")),
			ign(bigint("index", "per-pipe sequence number")),
			varchar("event", maxEventChars, "event name"),
			req(text("message", "message text")),
			ign(bigint("user_id", "sender user id, 0 for CometQL")),
		},
	},
	{
		id: tPipes, name: "pipes", key: 0, readOnly: true,
		comment: "pipes and their subscribed connections",
		cols: []colDef{
			varchar("name", maxPipeChars, "pipe name"),
			intcol("users", "subscribed connections"),
		},
	},
	{
		id: tUsersInPipes, name: "users_in_pipes", key: 0, readOnly: true,
		comment: "one row per subscribed connection",
		cols: []colDef{
			varchar("name", maxPipeChars, "pipe name"),
			bigint("user_id", "authorized user id, 0 when anonymous"),
			varchar("user_uuid", 32, "browser uuid"),
			varchar("user_agent", 255, "User-Agent"),
			varchar("ip", 45, "peer address"),
			varchar("origin", 255, "Origin"),
			varchar("language", 64, "Accept-Language"),
		},
	},
	{
		id: tPipesSettings, name: "pipes_settings", key: 0, primary: true,
		comment: "history length of logging pipes",
		cols: []colDef{
			req(varchar("name", maxPipeChars, "pipe name")),
			req(intcol("length", "messages kept, 0..1000 (0 = off)")),
		},
	},
	{
		id: tUsersMessages, name: "users_messages", key: 0, intKey: true,
		comment: "private messages (INSERT) and offline queues (SELECT, DELETE)",
		cols: []colDef{
			req(bigint("id", "user id")),
			ign(bigint("index", "queue position")),
			varchar("event", maxEventChars, "event name"),
			req(text("message", "message text")),
			ign(bigint("time", "unix time queued")),
		},
	},
	{
		id: tUsersTime, name: "users_time", key: 0, intKey: true, readOnly: true,
		comment: "0 = online, unix time = last seen, -1 = never seen",
		cols: []colDef{
			bigint("id", "user id"),
			bigint("time", "0 online, last seen, -1 never"),
		},
	},
	{
		id: tUsersAuth, name: "users_auth", key: 0, intKey: true, primary: true,
		comment: "browser keys of users",
		cols: []colDef{
			req(bigint("id", "user id")),
			req(varchar("hash", maxHashChars, "browser key, [0-9A-Za-z=+/_]")),
		},
	},
	{
		id: tUsersData, name: "users_data", key: 0, intKey: true, primary: true,
		comment: "per-user data browsers can read",
		cols: []colDef{
			req(bigint("id", "user id")),
			req(text("data", "user data")),
		},
	},
	{
		id: tRevokedTokens, name: "revoked_tokens", key: 0, primary: true,
		comment: "revoked JWTs",
		cols: []colDef{
			req(text("token", "the JWT")),
			ign(bigint("time", "unix time revoked")),
		},
	},
}

var tableByName = func() map[string]*tableDef {
	m := make(map[string]*tableDef, len(tables))
	for _, t := range tables {
		m[t.name] = t
	}
	return m
}()

// lookupTable finds a table by case-insensitive name.
func lookupTable(name string) *tableDef {
	if t := tableByName[name]; t != nil {
		return t
	}
	return tableByName[strings.ToLower(name)]
}

// columns returns the result columns of a table (all of them, SELECT *).
func (t *tableDef) columns() []Column {
	out := make([]Column, len(t.cols))
	for i, c := range t.cols {
		out[i] = Column{Name: c.name, Type: c.typ, Length: c.length, Table: t.name, Nullable: c.nullable}
	}
	return out
}
