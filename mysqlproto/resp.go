package mysqlproto

import (
	"encoding/binary"
	"strconv"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/cometql/cometql/sqlengine"
)

// The response encoders. go-mysql's own OK packet drops the info string
// unless the client asked for session tracking, and its result sets are text
// only; the handler writes every response itself with these and hands
// go-mysql a result that writes nothing (written).

// written is returned to go-mysql after the handler has written the response
// itself: a finished multi-result stream, for which go-mysql writes nothing.
var written = &mysql.Result{Resultset: &mysql.Resultset{
	Fields:        []*mysql.Field{{}},
	Streaming:     mysql.StreamingMultiple,
	StreamingDone: true,
}}

// packetWriter builds packets in one reusable buffer (the first 4 bytes are
// the header go-mysql fills in).
type packetWriter struct {
	buf []byte
}

func (w *packetWriter) begin() []byte {
	if cap(w.buf) > 1<<20 {
		w.buf = nil
	}
	w.buf = append(w.buf[:0], 0, 0, 0, 0)
	return w.buf
}

func appendLenEncInt(b []byte, n uint64) []byte {
	switch {
	case n < 251:
		return append(b, byte(n))
	case n < 1<<16:
		return append(b, 0xfc, byte(n), byte(n>>8))
	case n < 1<<24:
		return append(b, 0xfd, byte(n), byte(n>>8), byte(n>>16))
	}
	b = append(b, 0xfe)
	return binary.LittleEndian.AppendUint64(b, n)
}

func appendLenEncString(b []byte, s string) []byte {
	b = appendLenEncInt(b, uint64(len(s)))
	return append(b, s...)
}

// okPacket encodes an OK packet with the info string ("Delivered: N").
func okPacket(b []byte, r *sqlengine.Result, status uint16, capab uint32) []byte {
	b = append(b, mysql.OK_HEADER)
	b = appendLenEncInt(b, r.AffectedRows)
	b = appendLenEncInt(b, r.LastInsertID)
	b = append(b, byte(status), byte(status>>8), byte(r.Warnings), byte(r.Warnings>>8))
	// Like MySQL, the info is length-encoded whether or not the client
	// tracks session state (mysqlnd and libmysql read it so), and sent
	// empty only to clients that track session state.
	if capab&mysql.CLIENT_SESSION_TRACK != 0 || r.Info != "" {
		b = appendLenEncString(b, r.Info)
	}
	return b
}

func eofPacket(b []byte, status uint16) []byte {
	return append(b, mysql.EOF_HEADER, 0, 0, byte(status), byte(status>>8))
}

func errPacket(b []byte, e *mysql.MyError) []byte {
	b = append(b, mysql.ERR_HEADER, byte(e.Code), byte(e.Code>>8), '#')
	state := e.State
	if len(state) != 5 {
		state = "HY000"
	}
	b = append(b, state...)
	return append(b, e.Message...)
}

// Column flags.
const (
	flagNotNull = 1
	flagBlob    = 16
	flagBinary  = 128
	flagNum     = 32768
)

// charsetBinary is the collation id of binary (numeric) columns.
const charsetBinary = 63

// columnDef encodes a ColumnDefinition41 packet. cs is the collation of
// text columns.
func columnDef(b []byte, c sqlengine.Column, cs uint16) []byte {
	schema, table := "", ""
	if c.Table != "" {
		schema, table = sqlengine.DatabaseName, c.Table
	}
	b = appendLenEncString(b, "def")
	b = appendLenEncString(b, schema)
	b = appendLenEncString(b, table)
	b = appendLenEncString(b, table)
	b = appendLenEncString(b, c.Name)
	if table != "" {
		b = appendLenEncString(b, c.Name)
	} else {
		b = appendLenEncString(b, "")
	}
	b = append(b, 0x0c)
	var typ byte
	var flags uint16
	length := c.Length
	charset := cs
	switch c.Type {
	case sqlengine.TypeBigInt:
		typ, flags, charset = mysql.MYSQL_TYPE_LONGLONG, flagBinary|flagNum, charsetBinary
		if length == 0 {
			length = 20
		}
	case sqlengine.TypeInt:
		typ, flags, charset = mysql.MYSQL_TYPE_LONG, flagBinary|flagNum, charsetBinary
		if length == 0 {
			length = 11
		}
	case sqlengine.TypeText:
		typ, flags = mysql.MYSQL_TYPE_BLOB, flagBlob
		if length == 0 {
			length = 65535
		}
		length *= 4
	default:
		typ = mysql.MYSQL_TYPE_VAR_STRING
		if length == 0 {
			length = 255
		}
		if length < 1<<30 {
			length *= 4
		}
	}
	if !c.Nullable {
		flags |= flagNotNull
	}
	b = binary.LittleEndian.AppendUint16(b, charset)
	b = binary.LittleEndian.AppendUint32(b, length)
	b = append(b, typ)
	b = binary.LittleEndian.AppendUint16(b, flags)
	b = append(b, 0, 0, 0) // decimals, filler
	return b
}

// intValue and textValue convert a result value for a column of the
// other kind (the engine types its columns, this is a safety net).
func intValue(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

func textValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return ""
}

func isInt(t sqlengine.ColumnType) bool {
	return t == sqlengine.TypeBigInt || t == sqlengine.TypeInt
}

// textRow encodes a row of the text protocol.
func textRow(b []byte, cols []sqlengine.Column, row []any) []byte {
	for i, v := range row {
		switch {
		case v == nil:
			b = append(b, 0xfb)
		case isInt(cols[i].Type):
			var num [20]byte
			d := strconv.AppendInt(num[:0], intValue(v), 10)
			b = appendLenEncInt(b, uint64(len(d)))
			b = append(b, d...)
		default:
			b = appendLenEncString(b, textValue(v))
		}
	}
	return b
}

// binaryRow encodes a row of the binary protocol (prepared statements).
func binaryRow(b []byte, cols []sqlengine.Column, row []any) []byte {
	b = append(b, 0x00)
	start := len(b)
	for range (len(cols) + 7 + 2) / 8 {
		b = append(b, 0)
	}
	for i, v := range row {
		if v == nil {
			pos := i + 2
			b[start+pos/8] |= 1 << (pos % 8)
			continue
		}
		switch cols[i].Type {
		case sqlengine.TypeBigInt:
			b = binary.LittleEndian.AppendUint64(b, uint64(intValue(v)))
		case sqlengine.TypeInt:
			b = binary.LittleEndian.AppendUint32(b, uint32(int32(intValue(v))))
		default:
			b = appendLenEncString(b, textValue(v))
		}
	}
	return b
}

// fieldData encodes a column definition for go-mysql's COM_FIELD_LIST and
// prepare answers.
func fieldData(c sqlengine.Column, cs uint16) []byte {
	return columnDef(nil, c, cs)
}

// paramDef is the definition sent for each placeholder of a prepared
// statement.
var paramDef = func() []byte {
	b := appendLenEncString(nil, "def")
	b = append(b, 0, 0, 0)
	b = appendLenEncString(b, "?")
	b = append(b, 0, 0x0c, charsetBinary, 0, 0, 0, 0, 0, mysql.MYSQL_TYPE_VAR_STRING, 0x80, 0, 0, 0, 0)
	return b
}()
