package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// wsClient makes WebSocket subscribers from one source address, as the
// CppComet JS does: parameters in the path, then "subscription\n<pipe>".
type wsClient struct {
	spec *workerSpec
	d    *websocket.Dialer
	hdr  http.Header
}

// writeBuffers is shared by every connection of the process: a connection
// holds a write buffer only while it writes.
var writeBuffers = &sync.Pool{}

func newWSClient(spec *workerSpec, src string) *wsClient {
	nd := newDialer(src, spec.ConnectTimeout)
	rb, wb := spec.ReadBuffer, spec.WriteBuffer
	if rb <= 0 {
		rb = 1024
	}
	if wb <= 0 {
		wb = 512
	}
	hdr := http.Header{}
	hdr.Set("User-Agent", "cometql-bench")
	if spec.Origin != "" {
		hdr.Set("Origin", spec.Origin)
	}
	return &wsClient{
		spec: spec,
		d: &websocket.Dialer{
			NetDialContext:   nd.DialContext,
			HandshakeTimeout: spec.ConnectTimeout,
			ReadBufferSize:   rb,
			WriteBufferSize:  wb,
			WriteBufferPool:  writeBuffers,
		},
		hdr: hdr,
	}
}

// wsURL is the CppComet connection URL for a client with this uuid.
func wsURL(spec *workerSpec, uuid string) string {
	return fmt.Sprintf("ws://%s%s/ws/sesion=%s&myid=%d&devid=%d&v=4.08&uuid=%s&api=js",
		spec.HTTPAddr, spec.PathPrefix, url.PathEscape(spec.Key), spec.UserID, spec.DevID, uuid)
}

// subUUID is the uuid of subscriber idx: 32 characters of [A-Za-z0-9_-].
func subUUID(idx int) string { return fmt.Sprintf("bench%027d", idx) }

// open dials and waits for the serverInfo frame; other objects that came in
// the same frame are returned for the caller to handle.
func (c *wsClient) open(ctx context.Context, uuid string) (*websocket.Conn, []byte, error) {
	conn, resp, err := c.d.DialContext(ctx, wsURL(c.spec, uuid), c.hdr)
	if err != nil {
		if resp != nil {
			err = fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, nil, err
	}
	deadline := time.Now().Add(c.spec.ConnectTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetReadDeadline(deadline)
	for {
		mt, r, err := conn.NextReader()
		if err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("waiting for serverInfo: %w", err)
		}
		if mt != websocket.TextMessage {
			io.Copy(io.Discard, r)
			continue
		}
		frame, err := io.ReadAll(r)
		if err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("waiting for serverInfo: %w", err)
		}
		var info bool
		var rest [][]byte
		var errFrame []byte
		eachObject(frame, func(obj []byte) {
			switch classifyFrame(obj).kind {
			case frameInfo:
				info = true
			case frameError:
				errFrame = obj
			default:
				rest = append(rest, obj)
			}
		})
		if errFrame != nil && !info {
			conn.Close()
			return nil, nil, fmt.Errorf("server error frame: %.200s", errFrame)
		}
		if !info {
			conn.Close()
			return nil, nil, fmt.Errorf("first frame is not serverInfo: %.200s", frame)
		}
		conn.SetReadDeadline(time.Time{})
		return conn, bytes.Join(rest, []byte{'\n'}), nil
	}
}

// subscribe connects subscriber s, subscribes it to pipe and starts its
// reader.
func (c *wsClient) subscribe(w *worker, s *sub, pipe string) error {
	ctx, cancel := context.WithTimeout(w.ctx, c.spec.ConnectTimeout)
	defer cancel()
	conn, rest, err := c.open(ctx, subUUID(s.idx))
	if err != nil {
		return err
	}
	conn.SetWriteDeadline(time.Now().Add(c.spec.ConnectTimeout))
	if err := conn.WriteMessage(websocket.TextMessage, []byte("subscription\n"+pipe)); err != nil {
		conn.Close()
		return fmt.Errorf("subscribe: %w", err)
	}
	conn.SetWriteDeadline(time.Time{})
	s.mu.Lock()
	s.ready = true
	s.closer = func() { conn.Close() }
	s.mu.Unlock()
	if len(rest) > 0 {
		w.onFrame(s, rest, time.Now().UnixNano())
	}
	go c.read(w, s, conn)
	return nil
}

// read reads frames until the connection ends. gorilla answers the
// server's Pings from inside NextReader, so reading continuously is all
// keep-alive needs.
func (c *wsClient) read(w *worker, s *sub, conn *websocket.Conn) {
	defer conn.Close()
	var buf []byte
	for {
		mt, r, err := conn.NextReader()
		if err != nil {
			w.lostConn(s, err)
			return
		}
		if mt != websocket.TextMessage {
			io.Copy(io.Discard, r)
			continue
		}
		buf, err = readInto(buf[:0], r)
		if err != nil {
			w.lostConn(s, err)
			return
		}
		w.onFrame(s, buf, time.Now().UnixNano())
		if cap(buf) > 1<<16 {
			buf = nil // do not keep a rare large frame's buffer
		}
	}
}

// readInto appends all of r to buf.
func readInto(buf []byte, r io.Reader) ([]byte, error) {
	if cap(buf) == 0 {
		buf = make([]byte, 0, 512)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			if errors.Is(err, io.EOF) {
				return buf, nil
			}
			return buf, err
		}
	}
}

// churnOnce connects, waits for serverInfo, subscribes and closes the way
// a closing tab does (a Close frame, then TCP close).
func (c *wsClient) churnOnce(ctx context.Context, uuid, pipe string) error {
	ctx, cancel := context.WithTimeout(ctx, c.spec.ConnectTimeout)
	defer cancel()
	conn, _, err := c.open(ctx, uuid)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetWriteDeadline(time.Now().Add(c.spec.ConnectTimeout))
	if err := conn.WriteMessage(websocket.TextMessage, []byte("subscription\n"+pipe)); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(time.Second))
	return nil
}
