// Package metrics counts what a running mailroom does and serves the
// counts to Prometheus ([metrics] listen), with a health check beside
// them.
//
// The message and login counters are counted from the log: every outcome
// already has one Info record with an event key (received, delivered,
// deferred, bounced, rejected, auth_failed, ...; see STYLE, "Logging"),
// and Metrics.Log wraps the logger's handler so that each such record is
// also counted. The log and the metrics therefore cannot disagree, as
// with postfix_exporter, which reads Postfix's log, and no protocol
// package knows of Prometheus. Connections are counted by wrapping the
// listeners (Metrics.Listener); the queue is read when scraped.
//
// Everything lives in a registry of the Metrics value, never in
// Prometheus's global default one.
package metrics

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// namespace prefixes every metric of mailroom's own.
const namespace = "mailroom"

// Options describe the process for Metrics.
type Options struct {
	// Version is the build's version, for mailroom_build_info.
	Version string
}

// Metrics holds mailroom's counters and gauges. Its zero value is not
// usable; call New.
type Metrics struct {
	reg *prometheus.Registry

	received   *prometheus.CounterVec
	rejected   *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	authFails  *prometheus.CounterVec
	refused    *prometheus.CounterVec
	events     *prometheus.CounterVec

	accepted *prometheus.CounterVec
	open     *prometheus.GaugeVec
	imap     prometheus.Gauge

	reloadOK, reloadTime prometheus.Gauge
}

// New returns Metrics with every mailroom metric and Go's runtime and
// process metrics registered.
func New(opts Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.received = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "messages_received_total",
		Help: "Messages accepted (acknowledged), by protocol (smtp, submission, lmtp).",
	}, []string{"proto"})
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "messages_rejected_total",
		Help: "Senders, recipients and messages refused for good, by protocol (empty for a message the delivery agent refused after DATA: too big, a loop) and reason: the reply's enhanced status code (5.1.1: no such user) or, without one, what was refused (relay_denied, ...).",
	}, []string{"proto", "reason"})
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "deliveries_total",
		Help: "Deliveries per recipient, by path (local: mailboxes, commands and files; remote: the outgoing queue) and result (delivered, deferred, bounced, expired).",
	}, []string{"path", "result"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "delivery_duration_seconds",
		Help: "Time to a successful delivery, by path: local, from the whole message received to durable in every mailbox; remote, from queued to accepted by the next hop (retries included).",
		// From a few milliseconds (an fsync) to the queue's retries (hours).
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
	}, []string{"path"})
	m.authFails = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "auth_failures_total",
		Help: "Failed logins, by protocol and result (failed: wrong credentials; throttled: refused because the address failed too often).",
	}, []string{"proto", "result"})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "connections_dropped_total",
		Help: "Connections refused at a limit or dropped for being too slow, by protocol and reason (limit, timeout).",
	}, []string{"proto", "reason"})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "log_events_total",
		Help: "Log records with an event key, by event (every outcome, including those without a metric of their own: held, quarantined, discarded, forwarded, panic, ...).",
	}, []string{"event"})
	m.accepted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "connections_total",
		Help: "Connections accepted, by listener (smtp, submission, submissions, lmtp, imap, imaps, managesieve, socketmap).",
	}, []string{"listener"})
	m.open = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "connections_open",
		Help: "Connections open now, by listener.",
	}, []string{"listener"})
	m.imap = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "imap_sessions",
		Help: "IMAP sessions open now (connections on the imap and imaps listeners).",
	})
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": opts.Version, "goversion": runtime.Version()},
	})
	build.Set(1)
	m.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "config_last_reload_successful",
		Help: "1 if the last SIGHUP reload took the configuration, the aliases file and the key pair (or none came yet), 0 if it kept an old one (the log says which).",
	})
	m.reloadOK.Set(1)
	m.reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "config_last_reload_success_timestamp_seconds",
		Help: "When the configuration was last loaded in full (the start, or a SIGHUP), as a Unix time.",
	})
	m.reloadTime.SetToCurrentTime()
	m.reg.MustRegister(m.reloadOK, m.reloadTime, m.received, m.rejected, m.deliveries, m.latency, m.authFails, m.refused, m.events,
		m.accepted, m.open, m.imap, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Reloaded records a SIGHUP reload: ok if everything was taken. A nil
// Metrics records nothing.
func (m *Metrics) Reloaded(ok bool) {
	if m == nil {
		return
	}
	if !ok {
		m.reloadOK.Set(0)
		return
	}
	m.reloadOK.Set(1)
	m.reloadTime.SetToCurrentTime()
}

// CertificateExpiry adds the expiry of the TLS certificate in use, as
// notAfter tells it at each scrape.
func (m *Metrics) CertificateExpiry(notAfter func() time.Time) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "tls_certificate_expiry_timestamp_seconds",
		Help: "When the TLS certificate in use expires, as a Unix time (alert well before: a renewal that failed, or was not reloaded with SIGHUP).",
	}, func() float64 { return float64(notAfter().Unix()) }))
}
