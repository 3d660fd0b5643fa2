//go:build !linux

package jsapi

import "errors"

// poller is Linux-only; elsewhere every WebSocket has a reading goroutine.
type poller struct{}

func newPollers(*Server, int) ([]*poller, error) {
	return nil, errors.New("epoll is Linux-only")
}

func (*poller) wake()             {}
func (*poller) close()            {}
func (*poller) add(*wsConn) error { return errors.New("epoll is Linux-only") }

// writeNonblock is never called without epoll loops (no writers).
func (c *wsConn) writeNonblock([]byte) (int, error) { return 0, errWouldBlock }
