package jsapi

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a connection or session is dropped by the server, the label of
// cometql_browser_drops_total.
const (
	dropOverflow      = "overflow"       // its outbox or long-poll buffer overflowed
	dropPongTimeout   = "pong_timeout"   // nothing read for PongTimeout
	dropReadTimeout   = "read_timeout"   // a started frame was not finished in time
	dropWriteTimeout  = "write_timeout"  // a write blocked for PongTimeout (the client does not read)
	dropProtocol      = "protocol_error" // an RFC 6455 violation
	dropTooLarge      = "too_large"      // a message over MaxFrameBytes
	dropIdle          = "idle"           // a long-poll session not polled for LongPollIdle
	dropPerIP         = "per_ip_limit"   // refused: MaxConnsPerIP
	dropLongPollLimit = "lp_limit"       // refused: MaxLongPollSessions
	dropShutdown      = "shutdown"       // refused or closed while shutting down
	dropFDReserve     = "fd_reserve"     // refused: file descriptors kept for CometQL and health checks
)

// metrics are the browser front end's Prometheus metrics. Hot paths hold
// the resolved children, never a label lookup.
type metrics struct {
	connWS, connLP       prometheus.Gauge
	framesWS, framesLP   prometheus.Counter
	bytesWS, bytesLP     prometheus.Counter
	writesWS, writesLP   prometheus.Counter
	drops                *prometheus.CounterVec
	handshakeErrors      *prometheus.CounterVec
	rateLimited          prometheus.Counter
	commands             prometheus.Counter
	tooLarge             prometheus.Counter
	dropOverflowCounter  prometheus.Counter
	dropPongTimeoutCount prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	conns := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "cometql", Subsystem: "browser", Name: "connections",
		Help: "Open browser connections by transport (ws: WebSockets, lp: long-poll sessions).",
	}, []string{"transport"})
	frames := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "cometql", Subsystem: "browser", Name: "frames_out_total",
		Help: "Frames written to browsers, by transport.",
	}, []string{"transport"})
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "cometql", Subsystem: "browser", Name: "bytes_out_total",
		Help: "Frame payload bytes written to browsers, by transport.",
	}, []string{"transport"})
	writes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "cometql", Subsystem: "browser", Name: "writes_total",
		Help: "Writes of frames to browsers, by transport (ws: socket writes, each carrying one or more frames; lp: poll responses carrying frames). frames_out_total / writes_total is the batching.",
	}, []string{"transport"})
	m := &metrics{
		writesWS: writes.WithLabelValues("ws"),
		writesLP: writes.WithLabelValues("lp"),
		connWS:   conns.WithLabelValues("ws"),
		connLP:   conns.WithLabelValues("lp"),
		framesWS: frames.WithLabelValues("ws"),
		framesLP: frames.WithLabelValues("lp"),
		bytesWS:  bytes.WithLabelValues("ws"),
		bytesLP:  bytes.WithLabelValues("lp"),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cometql", Subsystem: "browser", Name: "drops_total",
			Help: "Browser connections closed or refused by the server, by reason.",
		}, []string{"reason"}),
		handshakeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cometql", Subsystem: "browser", Name: "handshake_errors_total",
			Help: "Connection attempts refused at the handshake, by code (401, 418, 403 origin, 400 bad upgrade, 503 limits).",
		}, []string{"code"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cometql", Subsystem: "browser", Name: "rate_limited_commands_total",
			Help: "Browser commands refused by the per-connection command rate limit.",
		}),
		commands: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cometql", Subsystem: "browser", Name: "commands_total",
			Help: "Commands received from browsers.",
		}),
		tooLarge: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cometql", Subsystem: "browser", Name: "messages_too_large_total",
			Help: "Browser messages over the size limit (a WebSocket is then closed, a long-poll command answered 413).",
		}),
	}
	m.dropOverflowCounter = m.drops.WithLabelValues(dropOverflow)
	m.dropPongTimeoutCount = m.drops.WithLabelValues(dropPongTimeout)
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{conns, frames, bytes, writes, m.drops, m.handshakeErrors, m.rateLimited, m.commands, m.tooLarge} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("jsapi: metrics already registered (one Server per Registerer)")
			}
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) drop(reason string) {
	switch reason {
	case dropOverflow:
		m.dropOverflowCounter.Inc()
	case dropPongTimeout:
		m.dropPongTimeoutCount.Inc()
	default:
		m.drops.WithLabelValues(reason).Inc()
	}
}

// wroteWS counts one write to a WebSocket carrying frames.
func (m *metrics) wroteWS(frames, payload int) {
	m.writesWS.Inc()
	if frames > 0 {
		m.framesWS.Add(float64(frames))
		m.bytesWS.Add(float64(payload))
	}
}
