package jsapi

import (
	"crypto/rand"
	"net/url"
	"strconv"
	"strings"

	"github.com/cometql/cometql/pipes"
)

// connParams are the parameters a browser connects with (SPEC 3.1), from a
// WebSocket URL or a long-poll open request.
type connParams struct {
	Key     string // the sesion value: a users_auth hash or a JWT
	UserID  int64  // myid; 0 when missing or not a user id (anonymous)
	DevID   int64  // devid; 0 when missing
	Version string // v, the client API version
	UUID    string // sanitized, or made by the server when missing
	API     string // api, informational ("js")
}

// Handshake error codes (SPEC 3.7).
const (
	codeNoSession  = 401
	codeBadVersion = 418
)

// handshakeError is a URL the server cannot serve: the connection gets one
// sys error frame (pipes.HandshakeErrorFrame) and is closed.
type handshakeError struct {
	code int
	text string
}

func (e *handshakeError) Error() string {
	return "Error code " + strconv.Itoa(e.code) + "(" + e.text + ")"
}

var (
	errNoSession  = &handshakeError{codeNoSession, "Invalid request, no session part (sesion=...) found"}
	errBadVersion = &handshakeError{codeBadVersion, "Invalid request Not assigned client api version"}
)

// Limits of connection parameters.
const (
	maxUUID     = 32
	maxKeyBytes = 4096 // longer keys are kept clipped: they cannot authenticate
	maxVersion  = 32
	maxAPI      = 16
)

// parseWSURL reads the connection parameters of a WebSocket request. params
// is the part of the path after "/ws" (such as
// "/sesion=K&myid=1&devid=0&v=4.08&uuid=U&api=js"; CppComet puts the
// parameters in the path) and query the raw query string (our own clients
// may use "/ws?sesion=..."). Keys are matched by name in any order; a key in
// the path wins over the same key in the query. Values in the path are
// percent-decoded as a path ('+' stays '+'), values in the query as a query.
//
// A request without a sesion key fails with code 401; one without a
// well-formed v (digits, optionally dot-separated groups of digits) with
// 418. Everything else is lenient: a missing or non-numeric myid is
// anonymous, a missing devid is 0, a uuid keeps its first 32 characters of
// [A-Za-z0-9_-] and a missing one is generated.
func parseWSURL(params, query string) (connParams, *handshakeError) {
	var (
		p                 connParams
		hasKey            bool
		myid, devid, uuid string
	)
	seen := 0 // bit set of the keys already taken
	const (
		bKey = 1 << iota
		bID
		bDev
		bV
		bUUID
		bAPI
	)
	take := func(k, v string) {
		var bit int
		switch k {
		case "sesion":
			bit = bKey
		case "myid":
			bit = bID
		case "devid":
			bit = bDev
		case "v":
			bit = bV
		case "uuid":
			bit = bUUID
		case "api":
			bit = bAPI
		default:
			return
		}
		if seen&bit != 0 {
			return
		}
		seen |= bit
		switch bit {
		case bKey:
			hasKey = true
			p.Key = clipString(v, maxKeyBytes)
		case bID:
			myid = v
		case bDev:
			devid = v
		case bV:
			p.Version = v
		case bUUID:
			uuid = v
		case bAPI:
			p.API = clipString(v, maxAPI)
		}
	}
	params = strings.TrimLeft(params, "/")
	eachPair(params, func(k, v string) {
		if d, err := url.PathUnescape(v); err == nil {
			v = d
		}
		take(k, v)
	})
	eachPair(query, func(k, v string) {
		if d, err := url.QueryUnescape(v); err == nil {
			v = d
		}
		take(k, v)
	})

	if !hasKey {
		return p, errNoSession
	}
	if !validVersion(p.Version) {
		return p, errBadVersion
	}
	p.Version = strings.Clone(p.Version)
	p.Key = strings.Clone(p.Key)
	p.API = strings.Clone(p.API)
	if id, err := strconv.ParseInt(myid, 10, 64); err == nil && pipes.ValidUserID(id) {
		p.UserID = id
	}
	if dev, err := strconv.ParseInt(devid, 10, 64); err == nil && dev > 0 {
		p.DevID = dev
	}
	p.UUID = sanitizeUUID(uuid)
	if p.UUID == "" {
		p.UUID = newUUID()
	}
	return p, nil
}

// eachPair calls f for every key=value pair of an &-separated list; a pair
// without '=' has an empty value.
func eachPair(s string, f func(k, v string)) {
	for s != "" {
		var pair string
		pair, s, _ = strings.Cut(s, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		f(k, v)
	}
}

// validVersion reports whether v is a client API version such as "4.08":
// groups of 1..9 digits separated by dots, at most 32 bytes.
func validVersion(v string) bool {
	if v == "" || len(v) > maxVersion {
		return false
	}
	digits := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= '0' && c <= '9':
			digits++
			if digits > 9 {
				return false
			}
		case c == '.' && digits > 0 && i < len(v)-1:
			digits = 0
		default:
			return false
		}
	}
	return true
}

// sanitizeUUID keeps the first 32 characters of [A-Za-z0-9_-] of u, dropping
// the others.
func sanitizeUUID(u string) string {
	clean := true
	n := 0
	for i := 0; i < len(u) && n < maxUUID; i++ {
		if isUUIDByte(u[i]) {
			n++
		} else {
			clean = false
		}
	}
	if clean {
		return strings.Clone(u[:n])
	}
	b := make([]byte, 0, n)
	for i := 0; i < len(u) && len(b) < maxUUID; i++ {
		if isUUIDByte(u[i]) {
			b = append(b, u[i])
		}
	}
	return string(b)
}

func isUUIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

const uuidAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

// newUUID makes a 32-character browser uuid of [A-Za-z0-9_-] (192 random
// bits).
func newUUID() string {
	var b [maxUUID]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = uuidAlphabet[b[i]&63]
	}
	return string(b[:])
}

// clipString cuts s to at most n bytes.
func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
