//go:build !linux

package jsapi

import (
	"errors"
	"net"
	"time"
)

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

// sockFD, detachSocket and wpoller are Linux-only: elsewhere no socket
// goes raw.
type sockFD struct{ fd int32 }

func (*sockFD) acquire() bool { return false }
func (*sockFD) release()      {}
func (*sockFD) close()        {}

func (*sockFD) drainAndShutdown(time.Duration, int) {}

func detachSocket(net.Conn) (int, bool) { return -1, false }

type wpoller struct{}

func (*wpoller) arm(*wsConn) error { return errClosedSocket }
func (*wpoller) wake()             {}
func (*wpoller) close()            {}

func newWPoller(*Server) (*wpoller, error) { return nil, errors.New("epoll is Linux-only") }
