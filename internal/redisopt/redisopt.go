// Package redisopt builds the Redis client options the cluster's Redis
// users share (the pipes engine, the auth store).
package redisopt

import (
	"time"

	"github.com/redis/rueidis"
)

// Options turns a Redis URL (redis://[user:password@]host:port/db, rediss://
// for TLS; it wins when set) or a host:port into client options: one Redis
// server (or a Sentinel-managed primary), no client-side cache, read-only
// commands retried twice, quickly, when a connection broke under them
// (writes and scripts never are: they may have run), one pipelined
// connection, and the dial and operation timeouts unless the URL sets them.
// One pipelined connection (rather than the client's default of several,
// picked at random per command) means that once any command got through
// after an outage, the connection every command uses is a fresh one: with
// several, each stale one would fail the first write sent to it. name, when not empty, is the
// CLIENT SETNAME unless the URL sets one. The error is the URL's.
func Options(url, addr string, dialTimeout, opTimeout time.Duration, name string) (rueidis.ClientOption, error) {
	var opt rueidis.ClientOption
	if url != "" {
		o, err := rueidis.ParseURL(url)
		if err != nil {
			return opt, err
		}
		opt = o
	} else {
		opt.InitAddress = []string{addr}
	}
	if opt.Sentinel.MasterSet == "" {
		opt.ForceSingleClient = true
	}
	opt.DisableCache = true
	if opt.PipelineMultiplex == 0 {
		opt.PipelineMultiplex = -1 // one connection: see above
	}
	opt.RetryDelay = func(attempts int, _ rueidis.Completed, _ error) time.Duration {
		if attempts > 2 {
			return -1
		}
		return time.Duration(attempts) * 20 * time.Millisecond
	}
	if opt.Dialer.Timeout == 0 {
		opt.Dialer.Timeout = dialTimeout
	}
	if opt.ConnWriteTimeout == 0 {
		opt.ConnWriteTimeout = opTimeout
	}
	if opt.ClientName == "" {
		opt.ClientName = name
	}
	return opt, nil
}

// IsConnError reports whether err means Redis was not reached or did not
// answer (in time), as opposed to Redis answering, with an error reply or
// a nil one.
func IsConnError(err error) bool {
	if err == nil || rueidis.IsRedisNil(err) {
		return false
	}
	_, isReply := rueidis.IsRedisErr(err)
	return !isReply
}
