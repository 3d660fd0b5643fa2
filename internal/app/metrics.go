package app

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// collector exports the hub's, the store's and the CometQL engine's counters
// to Prometheus at scrape time (the packages keep plain atomic counters).
type collector struct {
	a *App

	sessions, subs, pipes         *prometheus.Desc
	published, delivered, private *prometheus.Desc
	queued, webPublished, limited *prometheus.Desc
	queueDropped                  *prometheus.Desc
	commits, writes, failed       *prometheus.Desc
	commitSeconds                 *prometheus.Desc
	statements, statementErrors   *prometheus.Desc

	browserErrors, qlErrors          *prometheus.Desc
	qlHandshakeFailures              *prometheus.Desc
	qlReadTimeouts, qlIdleTimeouts   *prometheus.Desc
	qlConnections                    *prometheus.Desc
	acceptErrors, acceptPauses       *prometheus.Desc
	httpReadTimeouts, openFiles      *prometheus.Desc
	openFilesLimit, openFilesReserve *prometheus.Desc
}

func newCollector(a *App) *collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("cometql_"+name, help, nil, nil)
	}
	return &collector{
		a:               a,
		sessions:        d("sessions", "Open browser sessions on this node."),
		subs:            d("subscriptions", "Session-pipe subscriptions on this node."),
		pipes:           d("pipes", "Pipes with subscribers on this node."),
		published:       d("messages_published_total", "Messages published to pipes."),
		delivered:       d("messages_delivered_total", "Pipe message frames queued to sessions."),
		private:         d("private_messages_delivered_total", "Private message frames queued to sessions (live and from queues)."),
		queued:          d("private_messages_queued_total", "Private messages queued for offline users."),
		webPublished:    d("web_published_total", "Messages published by browsers (web_pipe2)."),
		limited:         d("rate_limited_total", "Browser publishes refused by the rate limit."),
		queueDropped:    d("offline_queue_dropped_total", "Queued private messages dropped because a queue was full."),
		commits:         d("store_commits_total", "SQLite transactions committed."),
		writes:          d("store_writes_total", "Writes committed (writes/commits is the group-commit batch)."),
		failed:          d("store_write_errors_total", "Writes that failed."),
		commitSeconds:   d("store_commit_seconds_total", "Time spent in committed transactions."),
		statements:      d("cometql_statements_total", "CometQL statements executed."),
		statementErrors: d("cometql_statement_errors_total", "CometQL statements that failed."),

		browserErrors: prometheus.NewDesc("cometql_browser_errors_total",
			"sys error frames sent to browsers, by code (too_many_subscriptions, rate_limited, message_too_large, forbidden, ...).", []string{"code"}, nil),
		qlErrors: prometheus.NewDesc("cometql_cometql_errors_total",
			"MySQL error packets sent to CometQL clients, by error code (1153 query too large, 1040 too many connections, 1406 too long, 4031 idle, ...).", []string{"code"}, nil),
		qlHandshakeFailures: prometheus.NewDesc("cometql_cometql_handshake_failures_total",
			"CometQL connections closed during the handshake, by reason (timeout, error; access denied is error code 1045).", []string{"reason"}, nil),
		qlReadTimeouts: d("cometql_read_timeouts_total", "CometQL connections closed because a started command packet stalled for the handshake timeout."),
		qlConnections:  d("cometql_connections", "Open CometQL (MySQL protocol) connections."),
		qlIdleTimeouts: d("cometql_idle_timeouts_total", "CometQL connections closed after the idle timeout."),
		acceptErrors: prometheus.NewDesc("cometql_accept_errors_total",
			"Failed accepts (out of file descriptors), each followed by a pause, by listener.", []string{"listener"}, nil),
		acceptPauses: prometheus.NewDesc("cometql_accept_pauses_total",
			"Times a listener stopped accepting to keep the file-descriptor reserve, by listener.", []string{"listener"}, nil),
		httpReadTimeouts: d("http_read_timeouts_total", "HTTP connections whose request headers (handshake timeout) or next request (idle timeout) did not come in time."),
		openFiles:        d("open_files", "File descriptors open, as the descriptor reserve counts them."),
		openFilesLimit:   d("open_files_limit", "The soft open-files limit the server runs with."),
		openFilesReserve: d("open_files_reserve", "File descriptors kept from browsers for CometQL and health checks (0: none)."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sessions, c.subs, c.pipes, c.published, c.delivered, c.private, c.queued,
		c.webPublished, c.limited, c.queueDropped, c.commits, c.writes, c.failed, c.commitSeconds, c.statements, c.statementErrors,
		c.browserErrors, c.qlErrors, c.qlHandshakeFailures, c.qlReadTimeouts, c.qlIdleTimeouts, c.qlConnections, c.acceptErrors, c.acceptPauses,
		c.httpReadTimeouts, c.openFiles, c.openFilesLimit, c.openFilesReserve} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	n := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	hs := c.a.hub.Stats()
	g(c.sessions, float64(hs.Sessions))
	g(c.subs, float64(hs.Subscriptions))
	g(c.pipes, float64(hs.Pipes))
	n(c.published, float64(hs.Published))
	n(c.delivered, float64(hs.Delivered))
	n(c.private, float64(hs.Private))
	n(c.queued, float64(hs.Queued))
	n(c.webPublished, float64(hs.WebPublished))
	n(c.limited, float64(hs.RateLimited))
	if me, ok := c.a.eng.(interface{ DroppedFromQueues() uint64 }); ok {
		n(c.queueDropped, float64(me.DroppedFromQueues()))
	}
	if c.a.store != nil { // nil in cluster mode
		ss := c.a.store.Stats()
		n(c.commits, float64(ss.Commits))
		n(c.writes, float64(ss.Writes))
		n(c.failed, float64(ss.Failed))
		n(c.commitSeconds, ss.CommitTime.Seconds())
	}
	total, failed := c.a.sql.Statements()
	n(c.statements, float64(total))
	n(c.statementErrors, float64(failed))

	for code, v := range hs.Errors {
		n(c.browserErrors, float64(v), code)
	}
	qs := c.a.ql.Stats()
	for code, v := range qs.Errors {
		n(c.qlErrors, float64(v), strconv.Itoa(int(code)))
	}
	n(c.qlHandshakeFailures, float64(qs.HandshakeTimeouts), "timeout")
	n(c.qlHandshakeFailures, float64(qs.HandshakeErrors), "error")
	n(c.qlReadTimeouts, float64(qs.ReadTimeouts))
	n(c.qlIdleTimeouts, float64(qs.IdleTimeouts))
	g(c.qlConnections, float64(c.a.ql.ConnectionCount()))
	n(c.acceptErrors, float64(qs.AcceptErrors), "cometql")
	n(c.acceptErrors, float64(c.a.web.AcceptErrors()), "http")
	if f := c.a.fds; f != nil {
		for class, name := range classNames {
			n(c.acceptPauses, float64(f.acceptPauses[class].Load()), name)
		}
		n(c.httpReadTimeouts, float64(f.httpTimeouts.Load()))
		g(c.openFiles, float64(f.open()))
		g(c.openFilesLimit, float64(f.limit))
		g(c.openFilesReserve, float64(f.reserve))
	}
}
