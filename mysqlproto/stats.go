package mysqlproto

import (
	"errors"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/server"
)

// Stats are the front end's counters, for metrics.
type Stats struct {
	// Errors counts the error packets sent, by MySQL error code: the
	// engine's (1064, 1406, ...), the front end's own (1153 query too
	// large, 1040 too many connections, 1053 shutting down, 1045 access
	// denied, 4031 idle timeout).
	Errors map[uint16]uint64
	// HandshakeTimeouts counts connections closed because the handshake
	// or authentication did not finish within HandshakeTimeout.
	HandshakeTimeouts uint64
	// HandshakeErrors counts connections closed because the handshake
	// failed otherwise (malformed or oversized packets, the client left).
	HandshakeErrors uint64
	// ReadTimeouts counts connections closed because a started command
	// packet was left unfinished for HandshakeTimeout.
	ReadTimeouts uint64
	// IdleTimeouts counts connections closed after IdleTimeout without a
	// command (answered with 4031).
	IdleTimeouts uint64
	// AcceptErrors counts failed accepts (file descriptors exhausted), each
	// followed by a pause.
	AcceptErrors uint64
}

// counters holds Stats. Error codes come from the server's own code, never
// from clients, so the map stays small.
type counters struct {
	mu     sync.Mutex
	errors map[uint16]uint64

	handshakeTimeouts, handshakeErrors atomic.Uint64
	readTimeouts, idleTimeouts         atomic.Uint64
	acceptErrors                       atomic.Uint64
}

func (c *counters) countCode(code uint16) {
	c.mu.Lock()
	if c.errors == nil {
		c.errors = map[uint16]uint64{}
	}
	c.errors[code]++
	c.mu.Unlock()
}

// countErr counts the error packet err becomes and returns err.
func (c *counters) countErr(err error) error {
	if err == nil {
		return nil
	}
	var me *mysql.MyError
	switch {
	case errors.As(err, &me):
		c.countCode(me.Code)
	case errors.Is(err, server.ErrAccessDenied):
		c.countCode(mysql.ER_ACCESS_DENIED_ERROR)
	}
	return err
}

// Stats returns the front end's counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	c.mu.Lock()
	errs := maps.Clone(c.errors)
	c.mu.Unlock()
	if errs == nil {
		errs = map[uint16]uint64{}
	}
	return Stats{
		Errors:            errs,
		HandshakeTimeouts: c.handshakeTimeouts.Load(),
		HandshakeErrors:   c.handshakeErrors.Load(),
		ReadTimeouts:      c.readTimeouts.Load(),
		IdleTimeouts:      c.idleTimeouts.Load(),
		AcceptErrors:      c.acceptErrors.Load(),
	}
}
