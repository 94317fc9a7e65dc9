package metrics

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// Log returns a handler that writes what next writes and counts each
// outcome record (one with an event key) on the way.
func (m *Metrics) Log(next slog.Handler) slog.Handler {
	return &logTap{next: next, m: m}
}

// fields are the keys of a record that the counters read.
type fields struct {
	event, proto, reply string
	delay               time.Duration
	hasDelay            bool
	// attempts and status are on the outgoing queue's delivery records
	// (sent: attempts; bounced: status), never on mda's: they tell the
	// two paths apart.
	queued bool
}

func (f *fields) set(a slog.Attr) {
	v := a.Value.Resolve()
	switch a.Key {
	case "event":
		f.event = v.String()
	case "proto":
		f.proto = v.String()
	case "reply":
		f.reply = v.String()
	case "attempts", "status":
		f.queued = true
	case "delay":
		if v.Kind() == slog.KindDuration {
			f.delay, f.hasDelay = v.Duration(), true
		}
	}
}

type logTap struct {
	next slog.Handler
	m    *Metrics
	pre  fields
	// grouped: the attributes from here on are in a group; slog's
	// outcome records use none, so nothing more is counted.
	grouped bool
}

func (h *logTap) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *logTap) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.next = h.next.WithAttrs(as)
	if !h.grouped {
		for _, a := range as {
			n.pre.set(a)
		}
	}
	return &n
}

func (h *logTap) WithGroup(name string) slog.Handler {
	n := *h
	n.next = h.next.WithGroup(name)
	n.grouped = n.grouped || name != ""
	return &n
}

func (h *logTap) Handle(ctx context.Context, r slog.Record) error {
	if !h.grouped {
		f := h.pre
		r.Attrs(func(a slog.Attr) bool {
			f.set(a)
			return true
		})
		if f.event != "" {
			h.m.count(f, r.Message)
		}
	}
	return h.next.Handle(ctx, r)
}

// count adds one outcome record to the counters.
func (m *Metrics) count(f fields, msg string) {
	m.events.WithLabelValues(f.event).Inc()
	path := "local"
	if f.queued {
		path = "queue"
	}
	switch f.event {
	case "received":
		m.received.WithLabelValues(f.proto).Inc()
	case "rejected":
		m.rejected.WithLabelValues(f.proto, rejectReason(f.reply, msg)).Inc()
	case "delivered", "sent":
		m.deliveries.WithLabelValues(path, "delivered").Inc()
		if f.hasDelay {
			m.latency.WithLabelValues(path).Observe(f.delay.Seconds())
		}
	case "deferred", "bounced", "expired":
		m.deliveries.WithLabelValues(path, f.event).Inc()
	case "auth_failed":
		m.authFails.WithLabelValues(f.proto, "failed").Inc()
	case "auth_throttled":
		m.authFails.WithLabelValues(f.proto, "throttled").Inc()
	case "refused":
		m.refused.WithLabelValues(f.proto, "limit").Inc()
	case "timeout":
		m.refused.WithLabelValues(f.proto, "timeout").Inc()
	}
}

// rejectReason is the enhanced status code of reply ("550 5.1.1 No such
// user" gives "5.1.1") or, for a record without one, its message as a
// label ("relay denied" gives "relay_denied"). Both come from mailroom's
// own code (a milter's reply is checked for the code's shape), so the
// label's values stay few.
func rejectReason(reply, msg string) string {
	if f := strings.Fields(reply); len(f) >= 2 && isStatus(f[1]) {
		return f[1]
	}
	return strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return ' '
	}, msg)), "_")
}

// isStatus reports whether s is an RFC 3463 status code: class "." subject
// "." detail, with a class of 2, 4 or 5 and at most three digits each.
func isStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.Contains("245", parts[0]) {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}
