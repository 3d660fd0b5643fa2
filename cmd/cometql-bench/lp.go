package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// lpClient makes long-poll subscribers from one source address:
//
//	GET  /lp/open?sesion=..&myid=..&devid=..&v=4.08&uuid=..&api=js → {"sid":..,"next":0}
//	POST /lp/send?sid=..  body "subscription\n<pipe>"              → {"ok":true}
//	GET  /lp/poll?sid=..&ack=n (held up to ~25 s)                  → {"sid":..,"next":m,"frames":[...]}
//	POST /lp/close?sid=..
//
// Each subscriber speaks HTTP/1.1 over its own keep-alive connection, as a
// browser tab would, one request at a time. The client is hand-rolled (no
// http.Transport: its two goroutines per connection and per-request
// allocations cost more CPU than the server being measured), and poll
// answers are split into frames by a small scanner, not encoding/json.
type lpClient struct {
	spec   *workerSpec
	dialer *net.Dialer
	host   string
	prefix string
}

func newLPClient(spec *workerSpec, src string) *lpClient {
	return &lpClient{
		spec:   spec,
		dialer: newDialer(src, spec.ConnectTimeout),
		host:   spec.HTTPAddr,
		prefix: spec.PathPrefix,
	}
}

// lpConn is one subscriber's HTTP/1.1 connection, redialled when lost.
type lpConn struct {
	c    *lpClient
	conn net.Conn
	br   *bufio.Reader
	req  []byte
	body []byte
}

// lpGone is the error of a request on a session the server ended.
type lpGone struct{ status int }

func (e *lpGone) Error() string { return fmt.Sprintf("session ended (HTTP %d)", e.status) }

var brPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 2048) }}

func (lc *lpConn) drop() {
	if lc.conn != nil {
		lc.conn.Close()
		lc.conn = nil
		lc.br.Reset(nil)
		brPool.Put(lc.br)
		lc.br = nil
	}
}

// do runs one request; the answer's body (valid until the next call) is
// returned for status 200, *lpGone for 404, an error otherwise.
func (lc *lpConn) do(ctx context.Context, method, pathQuery string, body []byte) ([]byte, error) {
	if lc.conn == nil {
		conn, err := lc.c.dialer.DialContext(ctx, "tcp", lc.c.host)
		if err != nil {
			return nil, err
		}
		lc.conn = conn
		lc.br = brPool.Get().(*bufio.Reader)
		lc.br.Reset(conn)
	}
	conn := lc.conn
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	} else {
		conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	r := lc.req[:0]
	r = append(r, method...)
	r = append(r, ' ')
	r = append(r, lc.c.prefix...)
	r = append(r, pathQuery...)
	r = append(r, " HTTP/1.1\r\nHost: "...)
	r = append(r, lc.c.host...)
	r = append(r, "\r\nUser-Agent: cometql-bench\r\n"...)
	if lc.c.spec.Origin != "" {
		r = append(r, "Origin: "...)
		r = append(r, lc.c.spec.Origin...)
		r = append(r, "\r\n"...)
	}
	if method == http.MethodPost {
		r = append(r, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
		r = strconv.AppendInt(r, int64(len(body)), 10)
		r = append(r, "\r\n"...)
	}
	r = append(r, "\r\n"...)
	r = append(r, body...)
	lc.req = r
	if _, err := conn.Write(r); err != nil {
		lc.drop()
		return nil, ctxErr(ctx, err)
	}
	resp, err := http.ReadResponse(lc.br, nil)
	if err != nil {
		lc.drop()
		return nil, ctxErr(ctx, err)
	}
	lc.body, err = readInto(lc.body[:0], resp.Body)
	resp.Body.Close()
	if err != nil {
		lc.drop()
		return nil, ctxErr(ctx, err)
	}
	if resp.Close {
		lc.drop()
	}
	if cap(lc.body) > 1<<20 {
		defer func() { lc.body = nil }() // do not keep a rare huge answer's buffer
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return lc.body, nil
	case http.StatusNotFound:
		return nil, &lpGone{resp.StatusCode}
	}
	return nil, fmt.Errorf("%s %s: HTTP %d: %.200s", method, pathQuery, resp.StatusCode, lc.body)
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// open opens a session and subscribes it to pipe.
func (lc *lpConn) open(ctx context.Context, uuid, pipe string) (sid string, next int64, err error) {
	spec := lc.c.spec
	q := url.Values{}
	q.Set("sesion", spec.Key)
	q.Set("myid", strconv.FormatInt(spec.UserID, 10))
	q.Set("devid", strconv.FormatInt(spec.DevID, 10))
	q.Set("v", "4.08")
	q.Set("uuid", uuid)
	q.Set("api", "js")
	b, err := lc.do(ctx, http.MethodGet, "/lp/open?"+q.Encode(), nil)
	if err != nil {
		return "", 0, fmt.Errorf("open: %w", err)
	}
	var o struct {
		Sid  string `json:"sid"`
		Next int64  `json:"next"`
	}
	if err := json.Unmarshal(b, &o); err != nil || o.Sid == "" {
		return "", 0, fmt.Errorf("open: bad answer %.200s", b)
	}
	b, err = lc.do(ctx, http.MethodPost, "/lp/send?sid="+url.QueryEscape(o.Sid), []byte("subscription\n"+pipe))
	if err == nil && !bytes.Contains(b, []byte(`"ok":true`)) {
		err = fmt.Errorf("answer %.200s", b)
	}
	if err != nil {
		lc.close(o.Sid)
		return "", 0, fmt.Errorf("subscribe: %w", err)
	}
	return o.Sid, o.Next, nil
}

// close ends the session and the connection.
func (lc *lpConn) close(sid string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lc.do(ctx, http.MethodPost, "/lp/close?sid="+url.QueryEscape(sid), nil)
	lc.drop()
}

// poll runs one poll and hands each frame to f.
func (lc *lpConn) poll(ctx context.Context, sid string, ack int64, f func(frame []byte)) (next int64, err error) {
	b, err := lc.do(ctx, http.MethodGet, "/lp/poll?sid="+url.QueryEscape(sid)+"&ack="+strconv.FormatInt(ack, 10), nil)
	if err != nil {
		return ack, err
	}
	return parsePoll(b, f)
}

// subscribe opens a session for s, subscribes it and starts its poll loop.
func (c *lpClient) subscribe(w *worker, s *sub, pipe string) error {
	lc := &lpConn{c: c}
	ctx, cancel := context.WithTimeout(w.ctx, c.spec.ConnectTimeout)
	sid, next, err := lc.open(ctx, subUUID(s.idx), pipe)
	cancel()
	if err != nil {
		lc.drop()
		return err
	}
	pctx, pcancel := context.WithCancel(w.ctx)
	done := make(chan struct{})
	s.mu.Lock()
	s.ready = true
	s.closer = func() {
		pcancel()
		<-done
		lc.close(sid)
	}
	s.mu.Unlock()
	go func() {
		defer close(done)
		c.pollLoop(pctx, w, s, lc, sid, next)
	}()
	return nil
}

// pollLoop polls until ctx ends or the server ends the session. A failed
// poll is retried with the same ack, as the protocol allows.
func (c *lpClient) pollLoop(ctx context.Context, w *worker, s *sub, lc *lpConn, sid string, ack int64) {
	failures := 0
	var now int64
	onFrame := func(frame []byte) { w.onFrame(s, frame, now) }
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		b, err := lc.do(pctx, http.MethodGet, "/lp/poll?sid="+url.QueryEscape(sid)+"&ack="+strconv.FormatInt(ack, 10), nil)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			now = time.Now().UnixNano()
			var next int64
			if next, err = parsePoll(b, onFrame); err == nil && next > ack {
				ack = next
			}
		}
		if err != nil {
			var gone *lpGone
			if errors.As(err, &gone) {
				w.lostConn(s, err)
				return
			}
			w.pollErrors.Add(1)
			failures++
			if failures > 20 {
				w.lostConn(s, err)
				return
			}
			select {
			case <-time.After(time.Duration(min(failures, 10)) * 100 * time.Millisecond):
			case <-ctx.Done():
				return
			}
			continue
		}
		failures = 0
	}
}

// churnOnce opens a session, subscribes, takes the first poll (serverInfo)
// and closes the session.
func (c *lpClient) churnOnce(ctx context.Context, uuid, pipe string) error {
	ctx, cancel := context.WithTimeout(ctx, c.spec.ConnectTimeout)
	defer cancel()
	lc := &lpConn{c: c}
	defer lc.drop()
	sid, next, err := lc.open(ctx, uuid, pipe)
	if err != nil {
		return err
	}
	defer lc.close(sid)
	info := false
	if _, err := lc.poll(ctx, sid, next, func(f []byte) {
		info = info || bytes.Contains(f, infoEvent)
	}); err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	if !info {
		return errors.New("first poll brought no serverInfo")
	}
	return nil
}

// parsePoll reads a poll answer {"sid":..,"next":m,"frames":[{..},..]}:
// next, and each frame (a slice of b) handed to f. Keys may come in any
// order; anything that is not that shape is an error.
func parsePoll(b []byte, f func(frame []byte)) (next int64, err error) {
	bad := func(why string) (int64, error) {
		return 0, fmt.Errorf("poll answer: %s: %.200s", why, b)
	}
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return bad("not an object")
	}
	i++
	sawNext := false
	for {
		i = skipSpace(b, i)
		if i < len(b) && b[i] == '}' {
			break
		}
		if i >= len(b) || b[i] != '"' {
			return bad("want a key")
		}
		end := skipString(b, i)
		if end < 0 {
			return bad("unterminated key")
		}
		key := string(b[i+1 : end-1])
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return bad("want ':'")
		}
		i = skipSpace(b, i+1)
		switch key {
		case "next":
			j := i
			for j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == '-') {
				j++
			}
			n, err := strconv.ParseInt(string(b[i:j]), 10, 64)
			if err != nil {
				return bad("bad next")
			}
			next, sawNext, i = n, true, j
		case "frames":
			if i >= len(b) || b[i] != '[' {
				if end := skipValue(b, i); end >= 0 && string(b[i:end]) == "null" {
					i = end
					break
				}
				return bad("frames is not an array")
			}
			i = skipSpace(b, i+1)
			for i < len(b) && b[i] != ']' {
				end := skipValue(b, i)
				if end < 0 {
					return bad("bad frame")
				}
				f(b[i:end])
				i = skipSpace(b, end)
				if i < len(b) && b[i] == ',' {
					i = skipSpace(b, i+1)
				}
			}
			if i >= len(b) {
				return bad("unterminated frames")
			}
			i++
		default:
			end := skipValue(b, i)
			if end < 0 {
				return bad("bad value of " + key)
			}
			i = end
		}
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i++
		}
	}
	if !sawNext {
		return bad("no next")
	}
	return next, nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// skipString returns the index after the JSON string starting at b[i]
// (a '"'), or -1.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index after the JSON value starting at b[i], or -1.
// It tracks nesting and strings; it does not validate numbers or literals.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				k := skipString(b, j)
				if k < 0 {
					return -1
				}
				j = k - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\r' && b[j] != '\t' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}
