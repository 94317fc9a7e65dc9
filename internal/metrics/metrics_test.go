package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// logged is one record as a package would log it: the logger's own
// attributes (With) and the record's.
type logged struct {
	with []any
	msg  string
	args []any
}

func TestLogCounts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		recs []logged
		// want are metric lines as the text format writes them.
		want []string
		// absent are metric names that must have no sample.
		absent []string
	}{
		{
			name: "received by proto",
			recs: []logged{
				{[]any{"proto", "smtp"}, "received", []any{"event", "received", "queue_id", "A"}},
				{[]any{"proto", "smtp"}, "received", []any{"event", "received", "queue_id", "B"}},
				{[]any{"proto", "lmtp"}, "received", []any{"event", "received", "queue_id", "C"}},
			},
			want: []string{
				`mailroom_messages_received_total{proto="smtp"} 2`,
				`mailroom_messages_received_total{proto="lmtp"} 1`,
				`mailroom_log_events_total{event="received"} 3`,
			},
		},
		{
			name: "rejections by status code or by what was refused",
			recs: []logged{
				{[]any{"proto", "smtp"}, "rejected", []any{"event", "rejected", "reply", "550 5.1.1 No such user here"}},
				{[]any{"proto", "lmtp"}, "rejected", []any{"event", "rejected", "reply", "552 5.3.4 Message too big"}},
				{[]any{"proto", "smtp"}, "relay denied", []any{"event", "rejected", "rcpt", "x@elsewhere"}},
				// A reply without a well-formed code (a milter's) is no label value.
				{[]any{"proto", "smtp"}, "message refused by a milter", []any{"event", "rejected", "reply", "550 5.1.1000 go away"}},
			},
			want: []string{
				`mailroom_messages_rejected_total{proto="smtp",reason="5.1.1"} 1`,
				`mailroom_messages_rejected_total{proto="lmtp",reason="5.3.4"} 1`,
				`mailroom_messages_rejected_total{proto="smtp",reason="relay_denied"} 1`,
				`mailroom_messages_rejected_total{proto="smtp",reason="message_refused_by_a_milter"} 1`,
			},
		},
		{
			name: "local and queue deliveries with their delays",
			recs: []logged{
				{nil, "delivered", []any{"event", "delivered", "kind", "mailbox", "proto", "smtp", "delay", 3 * time.Millisecond}},
				{nil, "delivered", []any{"event", "delivered", "kind", "command", "proto", "LMTP", "delay", 70 * time.Millisecond}},
				{nil, "delivery failed", []any{"event", "deferred", "kind", "mailbox", "proto", "smtp"}},
				{nil, "delivery failed", []any{"event", "bounced", "kind", "file", "proto", "local"}},
				// mda's failure of a whole transaction (the body could not be spooled).
				{nil, "message not accepted", []any{"event", "deferred", "from", "a@b"}},
				// The queue's records: attempts, status.
				{[]any{"queue_id", "Q", "delay", 2 * time.Hour}, "sent", []any{"event", "sent", "via", "smtp", "attempts", 1}},
				{[]any{"queue_id", "Q"}, "deferred", []any{"event", "deferred", "status", "4.4.1", "attempts", 2}},
				{[]any{"queue_id", "Q"}, "expired", []any{"event", "expired", "status", "4.4.7", "attempts", 9}},
				{[]any{"queue_id", "Q"}, "bounced", []any{"event", "bounced", "status", "5.1.1"}},
				// A delay that is not a duration is not observed.
				{nil, "sent", []any{"event", "sent", "delay", "soon", "attempts", 1}},
			},
			want: []string{
				`mailroom_deliveries_total{path="local",result="delivered"} 2`,
				`mailroom_deliveries_total{path="local",result="deferred"} 2`,
				`mailroom_deliveries_total{path="local",result="bounced"} 1`,
				`mailroom_deliveries_total{path="queue",result="delivered"} 2`,
				`mailroom_deliveries_total{path="queue",result="deferred"} 1`,
				`mailroom_deliveries_total{path="queue",result="expired"} 1`,
				`mailroom_deliveries_total{path="queue",result="bounced"} 1`,
				`mailroom_delivery_duration_seconds_bucket{path="local",le="0.005"} 1`,
				`mailroom_delivery_duration_seconds_bucket{path="local",le="0.1"} 2`,
				`mailroom_delivery_duration_seconds_count{path="local"} 2`,
				`mailroom_delivery_duration_seconds_bucket{path="queue",le="3600"} 0`,
				`mailroom_delivery_duration_seconds_bucket{path="queue",le="14400"} 1`,
				`mailroom_delivery_duration_seconds_count{path="queue"} 1`,
			},
		},
		{
			name: "logins and connections",
			recs: []logged{
				{[]any{"proto", "imap"}, "authentication failed", []any{"event", "auth_failed", "user", "a@example.org"}},
				{[]any{"proto", "imap"}, "authentication refused", []any{"event", "auth_throttled"}},
				{[]any{"proto", "submission"}, "authentication failed", []any{"event", "auth_failed"}},
				{[]any{"proto", "imap"}, "authenticated", []any{"event", "auth"}},
				{[]any{"proto", "smtp"}, "connection refused: too many connections", []any{"event", "refused"}},
				{[]any{"proto", "smtp"}, "client too slow; dropped", []any{"event", "timeout"}},
			},
			want: []string{
				`mailroom_auth_failures_total{proto="imap",result="failed"} 1`,
				`mailroom_auth_failures_total{proto="imap",result="throttled"} 1`,
				`mailroom_auth_failures_total{proto="submission",result="failed"} 1`,
				`mailroom_connections_dropped_total{proto="smtp",reason="limit"} 1`,
				`mailroom_connections_dropped_total{proto="smtp",reason="timeout"} 1`,
				`mailroom_log_events_total{event="auth"} 1`,
			},
		},
		{
			name: "records without an event, or in a group, count nothing",
			recs: []logged{
				{[]any{"proto", "smtp"}, "listening", []any{"addr", "127.0.0.1:25"}},
				{[]any{slog.Group("g", "x", 1)}, "expanded", []any{"from", "a@b"}},
			},
			absent: []string{"mailroom_log_events_total", "mailroom_messages_received_total"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m := New(Options{Version: "test"})
			var out strings.Builder
			log := slog.New(m.Log(slog.NewTextHandler(&out, nil)))
			for _, r := range c.recs {
				log.With(r.with...).Info(r.msg, r.args...)
			}
			if got := strings.Count(out.String(), "\n"); got != len(c.recs) {
				t.Errorf("the wrapped handler wrote %d records, want %d:\n%s", got, len(c.recs), out.String())
			}
			text := scrapeText(t, m)
			for _, w := range c.want {
				if !strings.Contains(text, w+"\n") {
					t.Errorf("no %q in the scrape:\n%s", w, grep(text, "mailroom_"))
				}
			}
			for _, name := range c.absent {
				if strings.Contains(text, "\n"+name+"{") {
					t.Errorf("%s has samples:\n%s", name, grep(text, name))
				}
			}
		})
	}
}

// TestLogGroup: a record logged in a group is written, but its keys are
// the group's, so it is not counted.
func TestLogGroup(t *testing.T) {
	t.Parallel()
	m := New(Options{})
	var out strings.Builder
	slog.New(m.Log(slog.NewJSONHandler(&out, nil))).WithGroup("sub").Info("x", "event", "received", "proto", "smtp")
	if !strings.Contains(out.String(), `"sub":{"event":"received"`) {
		t.Fatalf("record not written as the handler writes it: %s", out.String())
	}
	if n := testutil.CollectAndCount(m.events); n != 0 {
		t.Fatalf("%d event series after a grouped record, want 0", n)
	}
}

func TestRejectReason(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ reply, msg, want string }{
		{"550 5.1.1 No such user", "rejected", "5.1.1"},
		{"554 5.7.1 Relay access denied", "x", "5.7.1"},
		{"421 4.7.0 Try later", "x", "4.7.0"},
		{"550 no code here", "message refused", "message_refused"},
		{"550 6.1.1 bad class", "Sender refused!", "sender_refused"},
		{"550 5.1 short", "a--b", "a_b"},
		{"", "recipient refused by a milter", "recipient_refused_by_a_milter"},
	} {
		if got := rejectReason(c.reply, c.msg); got != c.want {
			t.Errorf("rejectReason(%q, %q) = %q, want %q", c.reply, c.msg, got, c.want)
		}
	}
}

// TestListener: connections are counted per listener while open, once
// each however often they are closed; IMAP's also as sessions.
func TestListener(t *testing.T) {
	t.Parallel()
	m := New(Options{})
	for _, name := range []string{"mx", "imap"} {
		raw, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l := m.Listener(raw, name)
		defer l.Close()
		var server []net.Conn
		for range 3 {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			server = append(server, s)
		}
		server[0].Close()
		server[0].Close()
		if got := testutil.ToFloat64(m.open.WithLabelValues(name)); got != 2 {
			t.Errorf("%s: %v open, want 2", name, got)
		}
		if got := testutil.ToFloat64(m.accepted.WithLabelValues(name)); got != 3 {
			t.Errorf("%s: %v accepted, want 3", name, got)
		}
	}
	if got := testutil.ToFloat64(m.imap); got != 2 {
		t.Errorf("%v IMAP sessions, want 2", got)
	}
}

// TestServer: /metrics has the queue as it is at the scrape, Go's runtime
// and the build; a queue that cannot be read leaves the rest served;
// /healthz is 200 "ok" or 503 with the trouble.
func TestServer(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	stats := QueueStats{Messages: 3, Held: 1, Pending: 4, Oldest: now.Add(-90 * time.Second)}
	var queueErr, healthErr error
	m := New(Options{Version: "v9.9.9"})
	srv := NewServer(ServerOptions{
		Metrics: m,
		Panics:  func() int64 { return 2 },
		Queue:   func() (QueueStats, error) { return stats, queueErr },
		Health:  func(context.Context) error { return healthErr },
		Now:     func() time.Time { return now },
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	base := "http://" + l.Addr().String()

	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	for _, w := range []string{
		"mailroom_queue_messages 3", "mailroom_queue_held_messages 1", "mailroom_queue_pending_recipients 4",
		"mailroom_queue_oldest_age_seconds 90", "mailroom_panics_total 2",
		`mailroom_build_info{goversion="go`, `version="v9.9.9"} 1`, "go_goroutines ", "process_open_fds ",
	} {
		if !strings.Contains(body, w) {
			t.Errorf("no %q in /metrics", w)
		}
	}
	queueErr = errors.New("database closed")
	code, body = get(t, base+"/metrics")
	if code != 200 || strings.Contains(body, "mailroom_queue_messages") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("with the queue unreadable: %d, want 200 with the rest and no queue:\n%s", code, grep(body, "queue"))
	}

	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("GET /healthz: %d %q, want 200 ok", code, body)
	}
	healthErr = errors.New("database: cannot read")
	if code, body := get(t, base+"/healthz"); code != 503 || !strings.Contains(body, "database: cannot read") {
		t.Errorf("GET /healthz when unhealthy: %d %q, want 503 with the reason", code, body)
	}
	if code, _ := get(t, base+"/nothing"); code != 404 {
		t.Errorf("GET /nothing: %d, want 404", code)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve after Shutdown: %v, want nil", err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrapeText is what a scrape of m's registry returns, in the text format.
func scrapeText(t *testing.T, m *Metrics) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ServerOptions{Metrics: m})
	go srv.Serve(l)
	defer srv.Close()
	_, body := get(t, "http://"+l.Addr().String()+"/metrics")
	return body
}

// grep returns the lines of text that contain s.
func grep(text, s string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestReloaded: a failed reload sets config_last_reload_successful to 0
// and keeps the time of the last full one; a good one sets both.
func TestReloaded(t *testing.T) {
	t.Parallel()
	m := New(Options{})
	if got := testutil.ToFloat64(m.reloadOK); got != 1 {
		t.Fatalf("at the start: %v, want 1", got)
	}
	start := testutil.ToFloat64(m.reloadTime)
	if start <= 0 {
		t.Fatalf("no start time: %v", start)
	}
	m.Reloaded(false)
	if got := testutil.ToFloat64(m.reloadOK); got != 0 {
		t.Errorf("after a failed reload: %v, want 0", got)
	}
	if got := testutil.ToFloat64(m.reloadTime); got != start {
		t.Errorf("a failed reload moved the time of the last good one: %v, want %v", got, start)
	}
	m.Reloaded(true)
	if got := testutil.ToFloat64(m.reloadOK); got != 1 {
		t.Errorf("after a good reload: %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.reloadTime); got < start {
		t.Errorf("time of the good reload %v before the start's %v", got, start)
	}
	var none *Metrics
	none.Reloaded(true) // no [metrics]: nothing to record, no panic
}
