package sqlengine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/cometql/cometql/auth"
	"github.com/cometql/cometql/pipes"
)

// MySQL error codes the engine returns, with the SQLSTATE each is sent with
// (SPEC 2.4). Every error the engine returns is a *mysql.MyError built by
// newError, whose message ends with the original CometQL error code where the
// original had one.
const (
	ErrCodeAccessDenied   = 1045 // 28000, CometQL 16
	ErrCodeTooManyConns   = 1040 // 08S01
	ErrCodeBadNull        = 1048 // 23000, CometQL 12
	ErrCodeUnknownDB      = 1049 // 42000, CometQL 15
	ErrCodeShutdown       = 1053 // 08S01
	ErrCodeUnknownColumn  = 1054 // 42S22, CometQL 14
	ErrCodeSyntax         = 1064 // 42000, CometQL 3
	ErrCodeUnknownError   = 1105 // HY000
	ErrCodeFieldTwice     = 1110 // 42000, CometQL 14
	ErrCodeColumnCount    = 1136 // 21S01, CometQL 14
	ErrCodeMixAggregate   = 1140 // 42000, CometQL 2
	ErrCodeUnknownTable   = 1146 // 42S02, CometQL 15
	ErrCodeQueryTooLarge  = 1153 // 08S01, CometQL 11
	ErrCodeWrongArguments = 1210 // HY000, CometQL 12
	ErrCodeUnsupported    = 1235 // 42000, CometQL 2
	ErrCodeReadOnly       = 1288 // HY000, CometQL 10
	ErrCodeInterrupted    = 1317 // 70100
	ErrCodeNoDefault      = 1364 // HY000, CometQL 12
	ErrCodeInvalidValue   = 1366 // HY000, CometQL 12
	ErrCodeTooLong        = 1406 // 22001, CometQL 11
	ErrCodeStorage        = 1030 // HY000
	ErrCodeNoTablesUsed   = 1096 // HY000
	ErrCodeInvalidGroup   = 1111 // HY000
	ErrCodeEmptyQuery     = 1065 // 42000
)

var sqlStates = map[uint16]string{
	ErrCodeAccessDenied:   "28000",
	ErrCodeTooManyConns:   "08S01",
	ErrCodeBadNull:        "23000",
	ErrCodeUnknownDB:      "42000",
	ErrCodeShutdown:       "08S01",
	ErrCodeUnknownColumn:  "42S22",
	ErrCodeSyntax:         "42000",
	ErrCodeUnknownError:   "HY000",
	ErrCodeFieldTwice:     "42000",
	ErrCodeColumnCount:    "21S01",
	ErrCodeMixAggregate:   "42000",
	ErrCodeUnknownTable:   "42S02",
	ErrCodeQueryTooLarge:  "08S01",
	ErrCodeWrongArguments: "HY000",
	ErrCodeUnsupported:    "42000",
	ErrCodeReadOnly:       "HY000",
	ErrCodeInterrupted:    "70100",
	ErrCodeNoDefault:      "HY000",
	ErrCodeInvalidValue:   "HY000",
	ErrCodeTooLong:        "22001",
	ErrCodeStorage:        "HY000",
	ErrCodeNoTablesUsed:   "HY000",
	ErrCodeInvalidGroup:   "HY000",
	ErrCodeEmptyQuery:     "42000",
}

// cometCodes maps a MySQL code to the code the original server used for the
// same situation.
var cometCodes = map[uint16]int{
	ErrCodeAccessDenied:   16,
	ErrCodeBadNull:        12,
	ErrCodeUnknownDB:      15,
	ErrCodeUnknownColumn:  14,
	ErrCodeSyntax:         3,
	ErrCodeFieldTwice:     14,
	ErrCodeColumnCount:    14,
	ErrCodeMixAggregate:   2,
	ErrCodeUnknownTable:   15,
	ErrCodeQueryTooLarge:  11,
	ErrCodeWrongArguments: 12,
	ErrCodeUnsupported:    2,
	ErrCodeReadOnly:       10,
	ErrCodeNoDefault:      12,
	ErrCodeInvalidValue:   12,
	ErrCodeTooLong:        11,
}

// NewError builds the *mysql.MyError for a code with its SQLSTATE; the
// message gets the CometQL code appended when the code has one.
func NewError(code uint16, format string, args ...any) *mysql.MyError {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	if c, ok := cometCodes[code]; ok {
		msg += fmt.Sprintf(" (CometQL error %d)", c)
	}
	state, ok := sqlStates[code]
	if !ok {
		state = "HY000"
	}
	return &mysql.MyError{Code: code, State: state, Message: msg}
}

func errSyntax(detail string) *mysql.MyError {
	return NewError(ErrCodeSyntax, "You have an error in your SQL syntax: %s", detail)
}

func errUnsupported(what string) *mysql.MyError {
	return NewError(ErrCodeUnsupported, "This version of cometql doesn't yet support '%s'", what)
}

func errUnknownTable(name string) *mysql.MyError {
	return NewError(ErrCodeUnknownTable, "Table '%s.%s' doesn't exist", DatabaseName, name)
}

func errUnknownDB(name string) *mysql.MyError {
	return NewError(ErrCodeUnknownDB, "Unknown database '%s'", name)
}

func errUnknownColumn(name, where string) *mysql.MyError {
	return NewError(ErrCodeUnknownColumn, "Unknown column '%s' in '%s'", name, where)
}

func errReadOnly(table string) *mysql.MyError {
	return NewError(ErrCodeReadOnly, "Table '%s' is read only", table)
}

func errColumnCount(row int) *mysql.MyError {
	return NewError(ErrCodeColumnCount, "Column count doesn't match value count at row %d", row)
}

func errNoDefault(col string) *mysql.MyError {
	return NewError(ErrCodeNoDefault, "Field '%s' doesn't have a default value", col)
}

func errBadNull(col string) *mysql.MyError {
	return NewError(ErrCodeBadNull, "Column '%s' cannot be null", col)
}

func errTooLong(col string, row, limit int) *mysql.MyError {
	return NewError(ErrCodeTooLong, "Data too long for column '%s' at row %d (at most %d)", col, row, limit)
}

// errInvalid reports a value a column does not accept: why says what is wrong.
func errInvalid(col string, row int, v string, why string) *mysql.MyError {
	return NewError(ErrCodeInvalidValue, "Incorrect value '%s' for column '%s' at row %d: %s", quoteValue(v), col, row, why)
}

// errBadUTF8 reports invalid UTF-8 the way MySQL does: the first bytes as
// \xNN escapes.
func errBadUTF8(col string, row int, v string) *mysql.MyError {
	i := 0
	for i < len(v) {
		r, n := utf8.DecodeRuneInString(v[i:])
		if r == utf8.RuneError && n <= 1 {
			break
		}
		i += n
	}
	var b strings.Builder
	for j := i; j < len(v) && j < i+6; j++ {
		fmt.Fprintf(&b, "\\x%02X", v[j])
	}
	return NewError(ErrCodeInvalidValue, "Incorrect string value: '%s' for column '%s' at row %d: the value is not valid UTF-8", b.String(), col, row)
}

// quoteValue shortens and sanitizes a value for an error message.
func quoteValue(v string) string {
	const n = 64
	if len(v) > n {
		v = v[:n] + "..."
	}
	return strings.ToValidUTF8(v, "?")
}

// mapError turns an error from the hub, auth or the store into a MyError.
func mapError(err error) *mysql.MyError {
	var me *mysql.MyError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &me):
		return me
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return NewError(ErrCodeInterrupted, "Query execution was interrupted")
	case errors.Is(err, pipes.ErrClosed):
		return NewError(ErrCodeShutdown, "Server shutdown in progress")
	case errors.Is(err, pipes.ErrMessageTooLarge):
		return NewError(ErrCodeTooLong, "Data too long: %v", err)
	case errors.Is(err, pipes.ErrInvalidPipe), errors.Is(err, pipes.ErrInvalidEvent),
		errors.Is(err, pipes.ErrInvalidUser), errors.Is(err, pipes.ErrInvalidMessage),
		errors.Is(err, pipes.ErrInvalidLength):
		return NewError(ErrCodeInvalidValue, "Incorrect value: %v", err)
	case errors.Is(err, auth.ErrInvalidHash), errors.Is(err, auth.ErrInvalidUser),
		errors.Is(err, auth.ErrInvalidData), errors.Is(err, auth.ErrInvalidToken):
		return NewError(ErrCodeInvalidValue, "Incorrect value: %v", err)
	case errors.Is(err, pipes.ErrStore):
		return NewError(ErrCodeStorage, "Storage error: %v", err)
	}
	return NewError(ErrCodeUnknownError, "Internal error: %v", err)
}
