package sqlengine

import (
	"context"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cometql/cometql/internal/version"
)

func vc(name string, n uint32) Column { return Column{Name: name, Type: TypeVarChar, Length: n} }
func vcNull(name string, n uint32) Column {
	return Column{Name: name, Type: TypeVarChar, Length: n, Nullable: true}
}
func bc(name string) Column { return Column{Name: name, Type: TypeBigInt, Length: 21} }
func bcNull(name string) Column {
	return Column{Name: name, Type: TypeBigInt, Length: 21, Nullable: true}
}

// showSchema is the result schema of a SHOW statement; LIKE matches its
// first column.
func showSchema(st *showStmt) []Column {
	switch st.what {
	case showDatabases:
		return []Column{vc("Database", 64)}
	case showTables:
		// CppComet's column name ("Tables"), which backends written for
		// it read, rather than MySQL's Tables_in_<database>.
		cols := []Column{vc("Tables", 64)}
		if st.full {
			cols = append(cols, vc("Table_type", 64))
		}
		return cols
	case showColumns:
		if st.full {
			return []Column{vc("Field", 64), vc("Type", 64), vcNull("Collation", 64), vc("Null", 3), vc("Key", 3),
				vcNull("Default", 64), vc("Extra", 64), vc("Privileges", 64), vc("Comment", 255)}
		}
		return []Column{vc("Field", 64), vc("Type", 64), vc("Null", 3), vc("Key", 3), vcNull("Default", 64), vc("Extra", 64)}
	case showStatus, showVariables:
		return []Column{vc("Variable_name", 64), vc("Value", 1024)}
	case showProcessList:
		return []Column{bc("Id"), vc("User", 32), vc("Host", 255), vcNull("db", 64), vc("Command", 16),
			bc("Time"), vcNull("State", 64), vcNull("Info", 1024)}
	case showTableStatus:
		return []Column{vc("Name", 64), vc("Engine", 64), bc("Version"), vc("Row_format", 10), bcNull("Rows"),
			bcNull("Avg_row_length"), bcNull("Data_length"), bcNull("Max_data_length"), bcNull("Index_length"),
			bcNull("Data_free"), bcNull("Auto_increment"), vcNull("Create_time", 19), vcNull("Update_time", 19),
			vcNull("Check_time", 19), vc("Collation", 64), bcNull("Checksum"), vc("Create_options", 255), vc("Comment", 255)}
	case showWarnings:
		return []Column{vc("Level", 7), bc("Code"), vc("Message", 512)}
	case showCollation:
		return []Column{vc("Collation", 64), vc("Charset", 64), bc("Id"), vc("Default", 3), vc("Compiled", 3), bc("Sortlen"), vc("Pad_attribute", 9)}
	case showCharset:
		return []Column{vc("Charset", 64), vc("Description", 64), vc("Default collation", 64), bc("Maxlen")}
	case showEngines:
		return []Column{vc("Engine", 64), vc("Support", 8), vc("Comment", 80), vcNull("Transactions", 3), vcNull("XA", 3), vcNull("Savepoints", 3)}
	case showCreateTable:
		return []Column{vc("Table", 64), vc("Create Table", 1024)}
	case showCreateDatabase:
		return []Column{vc("Database", 64), vc("Create Database", 1024)}
	case showIndex:
		return []Column{vc("Table", 64), bc("Non_unique"), vc("Key_name", 64), bc("Seq_in_index"), vc("Column_name", 64),
			vcNull("Collation", 1), bcNull("Cardinality"), bcNull("Sub_part"), vcNull("Packed", 10), vc("Null", 3),
			vc("Index_type", 16), vc("Comment", 16), vc("Index_comment", 1024), vc("Visible", 3), vcNull("Expression", 64)}
	}
	return nil
}

func (s *Session) execShow(ctx context.Context, st *showStmt, e *env) (*Result, error) {
	var rows [][]any
	switch st.what {
	case showDatabases:
		rows = [][]any{{DatabaseName}}
	case showTables:
		for _, t := range tables {
			r := []any{t.name}
			if st.full {
				r = append(r, "BASE TABLE")
			}
			rows = append(rows, r)
		}
	case showColumns:
		t := st.table
		for i, c := range t.cols {
			key := ""
			if i == t.key && t.primary {
				key = "PRI"
			}
			null := "NO"
			if c.nullable {
				null = "YES"
			}
			var def any
			if !c.required && !c.ignored && c.typ != TypeText {
				def = ""
			}
			if st.full {
				var coll any
				if c.typ == TypeVarChar || c.typ == TypeText {
					coll = "utf8mb4_bin"
				}
				rows = append(rows, []any{c.name, c.sqlType, coll, null, key, def, "", "select,insert,delete", c.comment})
			} else {
				rows = append(rows, []any{c.name, c.sqlType, null, key, def, ""})
			}
		}
	case showStatus:
		rows = s.statusRows(ctx)
	case showVariables:
		names := make([]string, 0, len(sysVars))
		for n := range sysVars {
			if !strings.Contains(n, ".") {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		for _, n := range names {
			rows = append(rows, []any{n, toString(s.sysVar(n))})
		}
	case showProcessList:
		if s.eng.fe != nil {
			for _, p := range s.eng.fe.Processes(s.dev) {
				var db, info, state any
				if p.DB != "" {
					db = p.DB
				}
				if p.Info != "" {
					info = p.Info
					if !st.full && len(p.Info) > 100 {
						info = p.Info[:100]
					}
					state = "executing"
				}
				rows = append(rows, []any{int64(p.ID), p.User, p.Host, db, p.Command, p.Time, state, info})
			}
		}
	case showTableStatus:
		for _, t := range tables {
			engine := "CometQL"
			rows = append(rows, []any{t.name, engine, int64(10), "Dynamic", nil, nil, nil, nil, nil, nil, nil,
				nil, nil, nil, "utf8mb4_bin", nil, "", t.comment})
		}
	case showWarnings:
	case showCollation:
		rows = [][]any{
			{"utf8mb4_general_ci", "utf8mb4", int64(45), "", "Yes", int64(1), "PAD SPACE"},
			{"utf8mb4_bin", "utf8mb4", int64(46), "", "Yes", int64(1), "PAD SPACE"},
			{"utf8mb4_0900_ai_ci", "utf8mb4", int64(255), "Yes", "Yes", int64(0), "NO PAD"},
		}
	case showCharset:
		rows = [][]any{{"utf8mb4", "UTF-8 Unicode", "utf8mb4_0900_ai_ci", int64(4)}}
	case showEngines:
		rows = [][]any{{"CometQL", "DEFAULT", "virtual tables of the comet server", "NO", "NO", "NO"}}
	case showCreateTable:
		rows = [][]any{{st.table.name, createTable(st.table)}}
	case showCreateDatabase:
		rows = [][]any{{DatabaseName, "CREATE DATABASE `" + DatabaseName + "` /*!40100 DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin */"}}
	case showIndex:
		if t := st.table; t.primary {
			rows = [][]any{{t.name, int64(0), "PRIMARY", int64(1), t.cols[t.key].name, "A", nil, nil, nil, "", "HASH", "", "", "YES", nil}}
		}
	}
	if st.like != nil {
		p := st.like.eval(e)
		out := rows[:0]
		for _, r := range rows {
			if p != nil && likeMatchFold(toString(r[0]), toString(p)) {
				out = append(out, r)
			}
		}
		rows = out
	}
	rows = filter(rows, st.where, e)
	if rows == nil {
		rows = [][]any{}
	}
	return &Result{Columns: st.schema, Rows: rows}, nil
}

// likeMatchFold is LIKE for SHOW patterns, which MySQL matches
// case-insensitively.
func likeMatchFold(s, p string) bool {
	return likeMatch(strings.ToLower(s), strings.ToLower(p), '\\')
}

func createTable(t *tableDef) string {
	var b strings.Builder
	b.WriteString("CREATE TABLE `" + t.name + "` (\n")
	for i, c := range t.cols {
		b.WriteString("  `" + c.name + "` " + c.sqlType)
		if !c.nullable {
			b.WriteString(" NOT NULL")
		}
		if c.comment != "" {
			b.WriteString(" COMMENT '" + strings.ReplaceAll(c.comment, "'", "''") + "'")
		}
		if i < len(t.cols)-1 || t.primary {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	if t.primary {
		b.WriteString("  PRIMARY KEY (`" + t.cols[t.key].name + "`)\n")
	}
	b.WriteString(") ENGINE=CometQL DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT='" + strings.ReplaceAll(t.comment, "'", "''") + "'")
	return b.String()
}

// statusRows are SHOW STATUS: the original's rows first (monitoring scripts
// read them), then ours.
func (s *Session) statusRows(ctx context.Context) [][]any {
	hub := s.eng.hub
	st := hub.Stats()
	conns := 0
	if s.eng.fe != nil {
		conns = s.eng.fe.ConnectionCount()
	}
	uptime := int64(time.Since(s.eng.start).Seconds())
	total, failed := s.eng.Statements()
	pipesWithSubs := 0
	if list, err := hub.Engine().ActivePipes(ctx, s.dev); err == nil {
		pipesWithSubs = len(list)
	}
	online, err := hub.Engine().Online(ctx, s.dev) // cluster-wide
	if err != nil {
		online = hub.Online(s.dev)
	}
	i := func(n int64) any { return strconv.FormatInt(n, 10) }
	u := func(n uint64) any { return strconv.FormatUint(n, 10) }
	var queueDrops uint64
	if d, ok := hub.Engine().(interface{ DroppedFromQueues() uint64 }); ok {
		queueDrops = d.DroppedFromQueues()
	}
	return [][]any{
		{"user_online", i(int64(online))},
		{"server_online", i(int64(conns))},
		{"messages", u(st.Delivered + st.Private)},
		{"uptime", i(uptime)},
		{"node_name", s.eng.cfg.NodeName},
		{"version", version.Server()},
		{"pipes", i(int64(pipesWithSubs))},
		{"sessions", i(st.Sessions)},
		{"subscriptions", i(st.Subscriptions)},
		{"pipes_all_tenants", i(st.Pipes)},
		{"messages_published", u(st.Published)},
		{"messages_delivered", u(st.Delivered)},
		{"private_delivered", u(st.Private)},
		{"private_queued", u(st.Queued)},
		{"web_published", u(st.WebPublished)},
		{"drops_rate_limited", u(st.RateLimited)},
		{"drops_queue_full", u(queueDrops)},
		{"statements", u(total)},
		{"statement_errors", u(failed)},
		{"Threads_connected", i(int64(conns))},
		{"Uptime", i(uptime)},
		{"Questions", u(total)},
	}
}

// sysVars are the system variables drivers read on connect, with fixed
// values; functions give those that depend on the configuration.
var sysVars = map[string]any{
	"auto_increment_increment":        int64(1),
	"auto_increment_offset":           int64(1),
	"autocommit":                      int64(1),
	"character_set_client":            "utf8mb4",
	"character_set_connection":        "utf8mb4",
	"character_set_database":          "utf8mb4",
	"character_set_filesystem":        "binary",
	"character_set_results":           "utf8mb4",
	"character_set_server":            "utf8mb4",
	"character_set_system":            "utf8mb3",
	"collation_connection":            "utf8mb4_general_ci",
	"collation_database":              "utf8mb4_bin",
	"collation_server":                "utf8mb4_general_ci",
	"default_storage_engine":          "CometQL",
	"div_precision_increment":         int64(4),
	"error_count":                     int64(0),
	"event_scheduler":                 "OFF",
	"explicit_defaults_for_timestamp": "ON",
	"foreign_key_checks":              int64(1),
	"group_concat_max_len":            int64(1024),
	"have_query_cache":                "NO",
	"identity":                        int64(0),
	"init_connect":                    "",
	"innodb_lock_wait_timeout":        int64(50),
	"interactive_timeout":             nil, // from Config.IdleTimeout
	"last_insert_id":                  int64(0),
	"license":                         "cometql",
	"lower_case_table_names":          int64(1),
	"max_allowed_packet":              nil, // from Config.MaxAllowedPacket
	"max_connections":                 nil, // from Config.MaxConnections
	"max_execution_time":              int64(0),
	"max_user_connections":            int64(0),
	"net_buffer_length":               int64(16384),
	"net_read_timeout":                int64(30),
	"net_write_timeout":               int64(60),
	"performance_schema":              int64(0),
	"port":                            int64(3300),
	"protocol_version":                int64(10),
	"query_cache_size":                int64(0),
	"query_cache_type":                "OFF",
	"read_only":                       int64(0),
	"session_track_gtids":             "OFF",
	"session_track_schema":            "ON",
	"session_track_state_change":      "OFF",
	"session_track_system_variables":  "",
	"sql_auto_is_null":                int64(0),
	"sql_mode":                        "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION",
	"sql_safe_updates":                int64(0),
	"sql_select_limit":                uint64(18446744073709551615),
	"storage_engine":                  "CometQL",
	"system_time_zone":                nil, // the process's time zone
	"time_zone":                       "SYSTEM",
	"transaction_isolation":           "REPEATABLE-READ",
	"transaction_read_only":           int64(0),
	"tx_isolation":                    "REPEATABLE-READ",
	"tx_read_only":                    int64(0),
	"unique_checks":                   int64(1),
	"version":                         nil, // ServerVersion
	"version_comment":                 nil, // version.Server
	"version_compile_machine":         "x86_64",
	"version_compile_os":              "Linux",
	"wait_timeout":                    nil, // from Config.IdleTimeout
	"warning_count":                   int64(0),
	"have_ssl":                        nil, // from Config.TLS
	"have_openssl":                    nil,
	"hostname":                        nil, // Config.NodeName
	"default_authentication_plugin":   "mysql_native_password",
	"skip_name_resolve":               "ON",
	"socket":                          "",
	"server_id":                       int64(1),
	"timestamp":                       nil, // now
	"default_week_format":             int64(0),
	"long_query_time":                 int64(10),
	"sql_notes":                       int64(1),
	"sql_warnings":                    int64(0),
	"bind_address":                    "",
	"datadir":                         "",
	"basedir":                         "",
	"thread_handling":                 "one-thread-per-connection",
}

// sysVar is the value of @@name (also @@session.name, @@global.name); NULL
// for unknown variables.
func (s *Session) sysVar(name string) any {
	name = strings.ToLower(name)
	for _, p := range []string{"session.", "global.", "local."} {
		name = strings.TrimPrefix(name, p)
	}
	cfg := s.eng.cfg
	if l, ok := s.eng.fe.(interface{ Limits() Limits }); ok {
		lim := l.Limits()
		cfg.MaxAllowedPacket, cfg.IdleTimeout, cfg.MaxConnections, cfg.TLS = lim.MaxAllowedPacket, lim.IdleTimeout, lim.MaxConnections, lim.TLS
	}
	switch name {
	case "interactive_timeout", "wait_timeout":
		return int64(cfg.IdleTimeout / time.Second)
	case "max_allowed_packet":
		return cfg.MaxAllowedPacket
	case "max_connections":
		return int64(cfg.MaxConnections)
	case "system_time_zone":
		zone, _ := time.Now().Zone()
		return zone
	case "version":
		return ServerVersion()
	case "version_comment":
		return version.Server()
	case "have_ssl", "have_openssl":
		if cfg.TLS {
			return "YES"
		}
		return "DISABLED"
	case "hostname":
		if cfg.NodeName != "" {
			return cfg.NodeName
		}
		h, _ := os.Hostname()
		return h
	case "timestamp":
		return time.Now().Unix()
	}
	return sysVars[name]
}
