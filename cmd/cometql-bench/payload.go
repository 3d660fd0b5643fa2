package main

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// The message text a publisher inserts is a small JSON object:
//
//	{"t":<send time, unix nanos>,"s":<seq>,"w":<stream>,"p":"<padding>"}
//
// padded with 'x' to the requested size. A stream is one publisher
// connection; seq counts that stream's messages to one pipe from 1 up, so
// a subscriber of the pipe must see each stream's seqs in order, once.

// payload is a decoded message text.
type payload struct {
	T int64  `json:"t"`
	S uint64 `json:"s"`
	W int    `json:"w"`
}

// encodePayload appends the message text of (t, seq, stream) padded to size
// bytes (or as short as it can be when size is smaller) to dst.
func encodePayload(dst []byte, t int64, seq uint64, stream, size int) []byte {
	start := len(dst)
	dst = append(dst, `{"t":`...)
	dst = strconv.AppendInt(dst, t, 10)
	dst = append(dst, `,"s":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"w":`...)
	dst = strconv.AppendInt(dst, int64(stream), 10)
	dst = append(dst, `,"p":"`...)
	pad := size - (len(dst) - start) - 2
	for ; pad > 0; pad-- {
		dst = append(dst, 'x')
	}
	return append(dst, `"}`...)
}

// decodePayload parses a message text made by encodePayload (or any JSON
// with the same keys).
func decodePayload(b []byte) (payload, bool) {
	if p, ok := scanPayload(b, false); ok {
		return p, true
	}
	var p payload
	if err := json.Unmarshal(b, &p); err != nil || p.S == 0 {
		return payload{}, false
	}
	return p, true
}

// frameKind says what a server frame is to the bench tool.
type frameKind int

const (
	frameOther   frameKind = iota // anything else (presence, answers, ...)
	frameMessage                  // a pipe message carrying one of our payloads
	frameInfo                     // the serverInfo frame
	frameError                    // a sys error frame
	frameBad                      // not JSON, or a message whose data is not ours
)

// frameResult is what classifyFrame learned from one frame.
type frameResult struct {
	kind frameKind
	p    payload
}

var (
	dataPrefix    = []byte(`"data":"{\"t\":`)
	infoEvent     = []byte(`"event":"serverInfo"`)
	errorEvent    = []byte(`"event":"error"`)
	escapedSeqKey = []byte(`,\"s\":`)
	escapedWKey   = []byte(`,\"w\":`)
)

// classifyFrame looks at one JSON object from the server. Pipe messages
// take a fast path: a targeted scan for "data":"{\"t\":..,\"s\":..,\"w\":..
// as our payload looks once JSON-escaped into the data string. Anything
// the scan does not recognise goes through encoding/json.
func classifyFrame(obj []byte) frameResult {
	if i := bytes.Index(obj, dataPrefix); i >= 0 {
		if p, ok := scanPayload(obj[i+len(`"data":"`):], true); ok {
			return frameResult{kind: frameMessage, p: p}
		}
	}
	if bytes.Contains(obj, infoEvent) {
		return frameResult{kind: frameInfo}
	}
	if bytes.Contains(obj, errorEvent) {
		return frameResult{kind: frameError}
	}
	return slowFrame(obj)
}

// slowFrame decodes a frame with encoding/json.
func slowFrame(obj []byte) frameResult {
	var f struct {
		Data  json.RawMessage `json:"data"`
		Event string          `json:"event"`
		Pipe  string          `json:"pipe"`
	}
	if err := json.Unmarshal(obj, &f); err != nil {
		return frameResult{kind: frameBad}
	}
	switch {
	case f.Event == "serverInfo":
		return frameResult{kind: frameInfo}
	case f.Event == "error" && f.Pipe == "sys":
		return frameResult{kind: frameError}
	}
	var text string
	if len(f.Data) == 0 || f.Data[0] != '"' || json.Unmarshal(f.Data, &text) != nil {
		return frameResult{kind: frameOther}
	}
	if len(text) == 0 || text[0] != '{' {
		return frameResult{kind: frameOther}
	}
	p, ok := decodePayload([]byte(text))
	if !ok {
		return frameResult{kind: frameBad}
	}
	return frameResult{kind: frameMessage, p: p}
}

// scanPayload reads t, s and w from the start of a payload, either raw
// ({"t":1,"s":2,"w":3,...) or JSON-escaped inside a string
// ({\"t\":1,\"s\":2,\"w\":3,...).
func scanPayload(b []byte, escaped bool) (payload, bool) {
	var p payload
	var pre, sKey, wKey []byte
	if escaped {
		pre, sKey, wKey = []byte(`{\"t\":`), escapedSeqKey, escapedWKey
	} else {
		pre, sKey, wKey = []byte(`{"t":`), []byte(`,"s":`), []byte(`,"w":`)
	}
	if !bytes.HasPrefix(b, pre) {
		return p, false
	}
	b = b[len(pre):]
	t, n := scanUint(b)
	if n == 0 {
		return p, false
	}
	b = b[n:]
	if !bytes.HasPrefix(b, sKey) {
		return p, false
	}
	b = b[len(sKey):]
	s, n := scanUint(b)
	if n == 0 || s == 0 {
		return p, false
	}
	b = b[n:]
	if !bytes.HasPrefix(b, wKey) {
		return p, false
	}
	b = b[len(wKey):]
	w, n := scanUint(b)
	if n == 0 || w > 1<<30 {
		return p, false
	}
	p.T, p.S, p.W = int64(t), s, int(w)
	return p, true
}

// scanUint reads decimal digits at the start of b: the value and how many
// bytes it took (0 when b does not start with a digit or overflows).
func scanUint(b []byte) (uint64, int) {
	var v uint64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if i >= 19 {
			return 0, 0
		}
		v = v*10 + uint64(b[i]-'0')
	}
	return v, i
}

// eachObject calls f with each JSON object of a server text frame: one or
// more objects separated by '\n' (JSON strings cannot hold a raw newline,
// so splitting on it is safe). Empty pieces are skipped.
func eachObject(frame []byte, f func(obj []byte)) {
	for len(frame) > 0 {
		i := bytes.IndexByte(frame, '\n')
		var obj []byte
		if i < 0 {
			obj, frame = frame, nil
		} else {
			obj, frame = frame[:i], frame[i+1:]
		}
		obj = bytes.TrimSpace(obj)
		if len(obj) > 0 {
			f(obj)
		}
	}
}
