package jsapi

import (
	"net/http"
	"net/url"
	"strconv"
)

// lpRequest is one decoded long-poll call (/lp/<op>, see longpoll.go).
type lpRequest struct {
	op  string // "open", "poll", "send" or "close"
	cb  string // JSONP callback; "" for none
	sid string // poll, send, close
	ack int64  // poll: the last frame the client received
	cmd string // send: the command (POST body or the cmd parameter of a GET)

	params connParams      // open
	herr   *handshakeError // open: parameters the server cannot serve
}

// lpError is a long-poll call the server refuses, before any session is
// looked up.
type lpError struct {
	status int
	text   string
	// early: answer before anything else is checked (the callback itself
	// is invalid, so the answer cannot be JSONP).
	early bool
}

var errLPBadCallback = &lpError{http.StatusBadRequest, "invalid callback name", true}

// parseLPRequest decodes a long-poll call: its method, the op after "/lp/",
// the raw query string and, for a POST to send, the body (read with at most
// maxCmd+1 bytes). It is pure: it only splits, unescapes and converts; the
// origin check and the session lookup are the caller's. maxCmd caps a
// command (413 over it). Whatever the input, it returns either a request
// whose fields are set for its op or an error with an HTTP status, never
// both without a callback; req.cb is always a valid callback or "".
func parseLPRequest(method, op, rawQuery string, body []byte, maxCmd int) (lpRequest, *lpError) {
	q, _ := url.ParseQuery(rawQuery) // like r.URL.Query: bad pairs are skipped
	var req lpRequest
	if cb := q.Get("callback"); cb != "" {
		if !validCallback(cb) {
			return req, errLPBadCallback
		}
		req.cb = cb
	}
	get := method == http.MethodGet || method == http.MethodHead
	post := method == http.MethodPost
	switch op {
	case "open", "send", "close":
		if !get && !post {
			return req, &lpError{status: http.StatusMethodNotAllowed, text: "method not allowed"}
		}
	case "poll":
		if !get {
			return req, &lpError{status: http.StatusMethodNotAllowed, text: "method not allowed"}
		}
	default:
		return req, &lpError{status: http.StatusNotFound, text: "unknown long-poll call"}
	}
	req.op = op
	if op == "open" {
		req.params, req.herr = parseWSURL("", rawQuery)
		return req, nil
	}
	req.sid = q.Get("sid")
	switch op {
	case "poll":
		if a := q.Get("ack"); a != "" {
			n, err := strconv.ParseInt(a, 10, 64)
			if err != nil || n < 0 {
				return req, &lpError{status: http.StatusBadRequest, text: "ack must be a frame number"}
			}
			req.ack = n
		}
	case "send":
		if post {
			if len(body) > maxCmd {
				return req, tooLargeCommand(maxCmd)
			}
			req.cmd = string(body)
			break
		}
		v, ok := q["cmd"]
		if !ok || len(v) == 0 {
			return req, &lpError{status: http.StatusBadRequest, text: "cmd parameter missing"}
		}
		if len(v[0]) > maxCmd {
			return req, tooLargeCommand(maxCmd)
		}
		req.cmd = v[0]
	}
	return req, nil
}

func tooLargeCommand(max int) *lpError {
	return &lpError{status: http.StatusRequestEntityTooLarge, text: "command over the limit of " + strconv.Itoa(max) + " bytes"}
}
