package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// lpClient makes long-poll subscribers from one source address:
//
//	GET  /lp/open?sesion=..&myid=..&devid=..&v=4.08&uuid=..&api=js → {"sid":..,"next":0}
//	POST /lp/send?sid=..  body "subscription\n<pipe>"              → {"ok":true}
//	GET  /lp/poll?sid=..&ack=n (held up to ~25 s)                  → {"sid":..,"next":m,"frames":[...]}
//	POST /lp/close?sid=..
//
// Each parked subscriber holds one poll, so one TCP connection.
type lpClient struct {
	spec *workerSpec
	base string
	tr   *http.Transport
	hc   *http.Client
}

func newLPClient(spec *workerSpec, src string) *lpClient {
	nd := newDialer(src, spec.ConnectTimeout)
	tr := &http.Transport{
		DialContext:         nd.DialContext,
		MaxIdleConns:        0, // no limit
		MaxIdleConnsPerHost: 1 << 20,
		IdleConnTimeout:     2 * time.Minute,
		DisableCompression:  true,
		WriteBufferSize:     1024,
		ReadBufferSize:      2048,
	}
	return &lpClient{
		spec: spec,
		base: "http://" + spec.HTTPAddr + spec.PathPrefix,
		tr:   tr,
		hc:   &http.Client{Transport: tr},
	}
}

// lpPoll is a poll (or open) answer.
type lpPoll struct {
	Sid    string            `json:"sid"`
	Next   int64             `json:"next"`
	Frames []json.RawMessage `json:"frames"`
	Error  string            `json:"error"`
}

// lpGone is the error of a request on a session the server ended.
type lpGone struct{ status int }

func (e *lpGone) Error() string { return fmt.Sprintf("session ended (HTTP %d)", e.status) }

// do runs a request and decodes a JSON answer into v.
func (c *lpClient) do(ctx context.Context, method, path, body string, v any) error {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "cometql-bench")
	if c.spec.Origin != "" {
		req.Header.Set("Origin", c.spec.Origin)
	}
	if body != "" {
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusNotFound {
		return &lpGone{resp.StatusCode}
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: HTTP %d: %.200s", method, path, resp.StatusCode, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("%s %s: %w: %.200s", method, path, err, b)
		}
	}
	return nil
}

// open opens a session and subscribes it to pipe.
func (c *lpClient) open(ctx context.Context, uuid, pipe string) (sid string, next int64, err error) {
	q := url.Values{}
	q.Set("sesion", c.spec.Key)
	q.Set("myid", strconv.FormatInt(c.spec.UserID, 10))
	q.Set("devid", strconv.FormatInt(c.spec.DevID, 10))
	q.Set("v", "4.08")
	q.Set("uuid", uuid)
	q.Set("api", "js")
	var o lpPoll
	if err := c.do(ctx, http.MethodGet, "/lp/open?"+q.Encode(), "", &o); err != nil {
		return "", 0, fmt.Errorf("open: %w", err)
	}
	if o.Sid == "" {
		return "", 0, fmt.Errorf("open: no sid in the answer")
	}
	var ok struct {
		OK bool `json:"ok"`
	}
	if err := c.do(ctx, http.MethodPost, "/lp/send?sid="+url.QueryEscape(o.Sid), "subscription\n"+pipe, &ok); err != nil {
		c.close(o.Sid)
		return "", 0, fmt.Errorf("subscribe: %w", err)
	}
	if !ok.OK {
		c.close(o.Sid)
		return "", 0, fmt.Errorf("subscribe: not ok")
	}
	return o.Sid, o.Next, nil
}

func (c *lpClient) close(sid string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.do(ctx, http.MethodPost, "/lp/close?sid="+url.QueryEscape(sid), "", nil)
}

// subscribe opens a session for s, subscribes it and starts its poll loop.
func (c *lpClient) subscribe(w *worker, s *sub, pipe string) error {
	ctx, cancel := context.WithTimeout(w.ctx, c.spec.ConnectTimeout)
	sid, next, err := c.open(ctx, subUUID(s.idx), pipe)
	cancel()
	if err != nil {
		return err
	}
	pctx, pcancel := context.WithCancel(w.ctx)
	done := make(chan struct{})
	s.mu.Lock()
	s.ready = true
	s.closer = func() {
		pcancel()
		<-done
		c.close(sid)
	}
	s.mu.Unlock()
	go func() {
		defer close(done)
		c.pollLoop(pctx, w, s, sid, next)
	}()
	return nil
}

// pollLoop polls until ctx ends or the server ends the session. A failed
// poll is retried with the same ack, as the protocol allows.
func (c *lpClient) pollLoop(ctx context.Context, w *worker, s *sub, sid string, ack int64) {
	failures := 0
	for ctx.Err() == nil {
		var p lpPoll
		pctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		err := c.do(pctx, http.MethodGet, "/lp/poll?sid="+url.QueryEscape(sid)+"&ack="+strconv.FormatInt(ack, 10), "", &p)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if _, gone := err.(*lpGone); gone {
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
		now := time.Now().UnixNano()
		for _, f := range p.Frames {
			w.onFrame(s, f, now)
		}
		if p.Next > ack {
			ack = p.Next
		}
	}
}

// churnOnce opens a session, subscribes, takes the first poll (serverInfo)
// and closes the session.
func (c *lpClient) churnOnce(ctx context.Context, uuid, pipe string) error {
	ctx, cancel := context.WithTimeout(ctx, c.spec.ConnectTimeout)
	defer cancel()
	sid, next, err := c.open(ctx, uuid, pipe)
	if err != nil {
		return err
	}
	defer c.close(sid)
	var p lpPoll
	if err := c.do(ctx, http.MethodGet, "/lp/poll?sid="+url.QueryEscape(sid)+"&ack="+strconv.FormatInt(next, 10), "", &p); err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	return nil
}
