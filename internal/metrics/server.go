package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// QueueStats describe the outgoing queue at one moment.
type QueueStats struct {
	// Messages is how many messages are queued, Held how many of them
	// are set aside (not retried), Pending how many recipients still wait
	// for a delivery.
	Messages, Held, Pending int
	// Oldest is when the oldest message not held was queued (zero for an
	// empty queue).
	Oldest time.Time
}

// ServerOptions configure the HTTP server of the metrics.
type ServerOptions struct {
	Metrics *Metrics
	// Queue, if set, is asked at each scrape.
	Queue func() (QueueStats, error)
	// Panics, if set, returns how many panics the servers recovered.
	Panics func() int64
	// Health, if set, is asked at each GET /healthz: nil is healthy, an
	// error says what is wrong (its text is shown: no secrets in it).
	Health func(context.Context) error
	Logger *slog.Logger
	// Now is time.Now unless a test fixes the clock.
	Now func() time.Time
}

// Server serves GET /metrics (Prometheus's text format, or OpenMetrics
// when asked) and GET /healthz (200 "ok", or 503 and the trouble).
type Server struct {
	http *http.Server
}

// healthTimeout bounds a health check, so that a wedged database is
// reported as unhealthy instead of hanging the prober.
const healthTimeout = 5 * time.Second

// NewServer returns a server of opts.Metrics.
func NewServer(opts ServerOptions) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger.With("proto", "metrics")
	scrape := prometheus.NewRegistry()
	if opts.Queue != nil {
		scrape.MustRegister(&queueCollector{stats: opts.Queue, now: opts.Now})
	}
	if opts.Panics != nil {
		scrape.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "panics_total",
			Help: "Panics recovered in the servers and workers (each is a bug; the log has its stack).",
		}, func() float64 { return float64(opts.Panics()) }))
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(prometheus.Gatherers{opts.Metrics.reg, scrape}, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		EnableOpenMetrics: true,
		// A queue that cannot be read leaves the other metrics served.
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       30 * time.Second,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if opts.Health != nil {
			ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
			defer cancel()
			if err := opts.Health(ctx); err != nil {
				log.Warn("health check failed", "err", err)
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "unhealthy: %v\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	return &Server{http: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}}
}

// Serve answers on l until Shutdown or Close, which make it return nil.
func (s *Server) Serve(l net.Listener) error {
	if err := s.http.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting and waits for the requests under way.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

// Close closes every connection at once.
func (s *Server) Close() error { return s.http.Close() }

var (
	queueMessages = prometheus.NewDesc(namespace+"_queue_messages",
		"Messages in the outgoing queue, held ones included.", nil, nil)
	queueHeld = prometheus.NewDesc(namespace+"_queue_held_messages",
		"Messages set aside in the queue (damaged record or body; not retried until dropped).", nil, nil)
	queuePending = prometheus.NewDesc(namespace+"_queue_pending_recipients",
		"Recipients in the queue still waiting for a delivery.", nil, nil)
	queueOldest = prometheus.NewDesc(namespace+"_queue_oldest_age_seconds",
		"Age of the oldest message in the queue that is not held (0 when empty).", nil, nil)
)

// queueCollector reads the queue at each scrape.
type queueCollector struct {
	stats func() (QueueStats, error)
	now   func() time.Time
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueMessages
	ch <- queueHeld
	ch <- queuePending
	ch <- queueOldest
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(queueMessages, fmt.Errorf("read the queue: %w", err))
		return
	}
	var age float64
	if !st.Oldest.IsZero() {
		age = max(0, c.now().Sub(st.Oldest).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(queueMessages, prometheus.GaugeValue, float64(st.Messages))
	ch <- prometheus.MustNewConstMetric(queueHeld, prometheus.GaugeValue, float64(st.Held))
	ch <- prometheus.MustNewConstMetric(queuePending, prometheus.GaugeValue, float64(st.Pending))
	ch <- prometheus.MustNewConstMetric(queueOldest, prometheus.GaugeValue, age)
}
