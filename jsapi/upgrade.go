package jsapi

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The RFC 6455 opening handshake, server side. The 101 response is not
// written here: upgrade returns it, and the connection writes it in the
// same write as its first frames (serverInfo), one write instead of two.

// acceptGUID is RFC 6455's key suffix.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// errHandshake is a request that is no WebSocket handshake (the HTTP
// error has been answered).
var errHandshake = errors.New("jsapi: not a websocket handshake")

// upgrade checks a WebSocket handshake and hijacks the connection: it
// returns the connection (deadlines cleared) and the 101 response to
// write. Checks fail with an HTTP error answered here: 400 for a request
// that is not a version-13 WebSocket handshake, 405 for a method other than
// GET. Extensions and subprotocols are not negotiated.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) (net.Conn, []byte, error) {
	const bad = "websocket: the client is not using the websocket protocol: "
	switch {
	case !headerHasToken(r.Header, "Connection", "upgrade"):
		return nil, nil, s.handshakeError(w, r, http.StatusBadRequest, bad+"'upgrade' token not found in 'Connection' header")
	case !headerHasToken(r.Header, "Upgrade", "websocket"):
		return nil, nil, s.handshakeError(w, r, http.StatusBadRequest, bad+"'websocket' token not found in 'Upgrade' header")
	case r.Method != http.MethodGet:
		return nil, nil, s.handshakeError(w, r, http.StatusMethodNotAllowed, bad+"request method is not GET")
	case !headerHasToken(r.Header, "Sec-Websocket-Version", "13"):
		return nil, nil, s.handshakeError(w, r, http.StatusBadRequest, "websocket: unsupported version: 13 not found in 'Sec-Websocket-Version' header")
	}
	key := r.Header.Get("Sec-Websocket-Key")
	if !validChallengeKey(key) {
		return nil, nil, s.handshakeError(w, r, http.StatusBadRequest, "websocket: not a websocket handshake: 'Sec-WebSocket-Key' header must be Base64 encoded value of 16-byte in length")
	}
	h, ok := w.(http.Hijacker)
	if !ok {
		return nil, nil, s.handshakeError(w, r, http.StatusInternalServerError, "websocket: response does not implement http.Hijacker")
	}
	nc, brw, err := h.Hijack()
	if err != nil {
		return nil, nil, s.handshakeError(w, r, http.StatusInternalServerError, err.Error())
	}
	if brw.Reader.Buffered() > 0 {
		nc.Close()
		return nil, nil, errors.New("websocket: client sent data before handshake is complete")
	}
	nc.SetDeadline(time.Time{}) // the HTTP server's
	resp := make([]byte, 0, 130)
	resp = append(resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	resp = appendAcceptKey(resp, key)
	resp = append(resp, "\r\n\r\n"...)
	return nc, resp, nil
}

// handshakeError answers a bad handshake with an HTTP error.
func (s *Server) handshakeError(w http.ResponseWriter, r *http.Request, status int, reason string) error {
	s.metrics.handshakeErrors.WithLabelValues(strconv.Itoa(status)).Inc()
	s.setCORS(w, r)
	http.Error(w, reason, status)
	return errHandshake
}

// appendAcceptKey appends the Sec-WebSocket-Accept value for key.
func appendAcceptKey(b []byte, key string) []byte {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte(acceptGUID))
	var sum [sha1.Size]byte
	return base64.StdEncoding.AppendEncode(b, h.Sum(sum[:0]))
}

// validChallengeKey reports whether key is base64 of 16 bytes.
func validChallengeKey(key string) bool {
	if len(key) != 24 {
		return false
	}
	var b [18]byte
	n, err := base64.StdEncoding.Decode(b[:], []byte(key))
	return err == nil && n == 16
}

// headerHasToken reports whether a comma-separated header holds token
// (case-insensitive).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h[http.CanonicalHeaderKey(name)] {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
