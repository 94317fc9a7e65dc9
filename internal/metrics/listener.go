package metrics

import (
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Listener wraps l so that its connections are counted under name (the
// listener's name in serve's "listening" record: smtp, submission, imap,
// ...): accepted in total, and open until closed.
func (m *Metrics) Listener(l net.Listener, name string) net.Listener {
	cl := &countingListener{Listener: l, accepted: m.accepted.WithLabelValues(name), open: []prometheus.Gauge{m.open.WithLabelValues(name)}}
	if name == "imap" || name == "imaps" {
		cl.open = append(cl.open, m.imap)
	}
	return cl
}

type countingListener struct {
	net.Listener
	accepted prometheus.Counter
	open     []prometheus.Gauge
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	l.accepted.Inc()
	for _, g := range l.open {
		g.Inc()
	}
	return &countedConn{Conn: c, open: l.open}, nil
}

// countedConn leaves the open gauges once, at its first Close.
type countedConn struct {
	net.Conn
	open []prometheus.Gauge
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		for _, g := range c.open {
			g.Dec()
		}
	})
	return c.Conn.Close()
}

// NetConn is the connection wrapped, for code that looks for it (as
// crypto/tls.Conn offers).
func (c *countedConn) NetConn() net.Conn { return c.Conn }
