package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"mailroom/internal/mailtest"
)

// metricsConfig has every way in, a smarthost that refuses (submitted
// remote mail stays queued) and [metrics] on a port of its own.
const metricsConfig = `hostname = "mx.test"
data_dir = "%DATA%"
domains = ["example.org"]
[tls]
cert = "%CERT%"
key = "%KEY%"
[smtp]
listen = ["127.0.0.1:0"]
[submission]
listen = ["127.0.0.1:0"]
[lmtp]
listen = ["127.0.0.1:0"]
[imap]
listen = ["127.0.0.1:0"]
[relay]
smarthost = "127.0.0.1:1"
[limits]
max_connections_per_ip = 2
[metrics]
listen = "127.0.0.1:0"
`

// TestMetrics: curl scrapes /metrics as Prometheus would, after mail was
// received on each way in, refused for an unknown user, delivered,
// queued for a smarthost that refuses, and a login failed on submission
// and on IMAP, with an IMAP session held open; every count is the one
// expected, the log has as many records as the counters count, and
// /healthz says ok.
func TestMetrics(t *testing.T) {
	t.Parallel()
	curl := mailtest.NeedTool(t, "curl")
	cert, key := mailtest.TestCert(t, mailtest.ShortTempDir(t))
	cfgText := strings.NewReplacer("%CERT%", cert, "%KEY%", key).Replace(metricsConfig)
	cfgPath, dir := mailtest.WriteConfig(t, cfgText)
	s := mailtest.StartServerConfig(t, cfgPath, dir)
	if out, code := s.Run(t, smtpPassword+"\n", "user", "add", "alice@example.org"); code != 0 {
		t.Fatalf("user add: exit %d\n%s", code, out)
	}
	base := "http://" + s.Addr(t, "metrics", false)
	mx, sub, lmtp := s.Addr(t, "smtp", false), s.Addr(t, "submission", false), s.Addr(t, "lmtp", false)
	msg := crlf("Subject: metrics\n\nhello\n")

	if tr := parseTranscript(swaks(t, msg, "--server", mx, "--from", "a@remote.test", "--to", "alice@example.org")); !strings.HasPrefix(last(tr.dataReplies()), "250") {
		t.Fatalf("MX delivery refused: %q", tr.dataReplies())
	}
	out := swaks(t, msg, "--server", mx, "--from", "a@remote.test", "--to", "nobody@example.org")
	if !strings.Contains(out, "<** 550 5.1.1") {
		t.Fatalf("unknown user not refused with 550 5.1.1:\n%s", out)
	}
	lmtpSwaks(t, lmtp, false, msg, "a@remote.test", "alice@example.org")
	out = swaks(t, msg, "--server", sub, "-a", "PLAIN", "-au", "alice@example.org", "-ap", smtpWrongPassword,
		"--from", "alice@example.org", "--to", "friend@remote.test")
	if !strings.Contains(out, "<** 535") {
		t.Fatalf("wrong password not refused with 535:\n%s", out)
	}
	if tr := parseTranscript(swaks(t, msg, "--server", sub, "-a", "PLAIN", "-au", "alice@example.org", "-ap", smtpPassword,
		"--from", "alice@example.org", "--to", "friend@remote.test")); !strings.HasPrefix(last(tr.dataReplies()), "250") {
		t.Fatalf("submission refused: %q", tr.dataReplies())
	}
	// Connections from one address past max_connections_per_ip get 421.
	dials, refused := 0, 0
	for refused == 0 && dials < 6 {
		dials++
		c, err := net.DialTimeout("tcp", mx, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		greeting, _ := bufio.NewReader(c).ReadString('\n')
		if strings.HasPrefix(greeting, "421 ") {
			refused++
		} else if !strings.HasPrefix(greeting, "220 ") {
			t.Fatalf("MX greeting %q", greeting)
		}
	}
	if refused == 0 {
		t.Fatalf("%d connections from one address, none refused with max_connections_per_ip = 2", dials)
	}
	ic := dialIMAP(t, s.Addr(t, "imap", false), nil)
	if _, st := ic.cmd("LOGIN alice@example.org " + smtpWrongPassword); !strings.HasPrefix(st, "NO") {
		t.Fatalf("IMAP LOGIN with a wrong password: %s", st)
	}

	// The queue tries the smarthost at once and defers.
	var fams map[string]*dto.MetricFamily
	mailtest.Eventually(t, 60*time.Second, "the queued message deferred", func() bool {
		fams = scrape(t, curl, base+"/metrics")
		v, _ := sample(fams, "mailroom_deliveries_total", "path", "queue", "result", "deferred")
		return v >= 1
	})
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"mailroom_messages_received_total", []string{"proto", "smtp"}, 1},
		{"mailroom_messages_received_total", []string{"proto", "submission"}, 1},
		{"mailroom_messages_received_total", []string{"proto", "lmtp"}, 1},
		{"mailroom_messages_rejected_total", []string{"proto", "smtp", "reason", "5.1.1"}, 1},
		{"mailroom_deliveries_total", []string{"path", "local", "result", "delivered"}, 2},
		{"mailroom_delivery_duration_seconds", []string{"path", "local"}, 2}, // the histogram's count
		{"mailroom_auth_failures_total", []string{"proto", "submission", "result", "failed"}, 1},
		{"mailroom_auth_failures_total", []string{"proto", "imap", "result", "failed"}, 1},
		{"mailroom_connections_total", []string{"listener", "smtp"}, float64(2 + dials)},
		{"mailroom_connections_dropped_total", []string{"proto", "smtp", "reason", "limit"}, float64(refused)},
		{"mailroom_connections_total", []string{"listener", "submission"}, 2},
		{"mailroom_connections_total", []string{"listener", "lmtp"}, 1},
		{"mailroom_connections_open", []string{"listener", "imap"}, 1},
		{"mailroom_imap_sessions", nil, 1},
		{"mailroom_queue_messages", nil, 1},
		{"mailroom_queue_pending_recipients", nil, 1},
		{"mailroom_queue_held_messages", nil, 0},
		{"mailroom_panics_total", nil, 0},
		{"mailroom_build_info", nil, 1},
		{"mailroom_config_last_reload_successful", nil, 1},
	} {
		got, ok := sample(fams, c.name, c.labels...)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if age, _ := sample(fams, "mailroom_queue_oldest_age_seconds"); age <= 0 || age > 600 {
		t.Errorf("mailroom_queue_oldest_age_seconds = %v, want the few seconds since the submission", age)
	}
	if v, _ := sample(fams, "mailroom_tls_certificate_expiry_timestamp_seconds"); v != float64(certNotAfter(t, cert, key).Unix()) {
		t.Errorf("mailroom_tls_certificate_expiry_timestamp_seconds = %v, want the certificate's %v", v, certNotAfter(t, cert, key).Unix())
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes"} {
		if v, ok := sample(fams, name); !ok || v <= 0 {
			t.Errorf("%s = %v (present %v): Go's runtime metrics missing", name, v, ok)
		}
	}
	// The log and the counters are one source: as many records as counts.
	recs := parseLog(t, s.Log(), "text")
	for _, event := range []string{"received", "rejected", "delivered", "auth_failed", "deferred"} {
		got, _ := sample(fams, "mailroom_log_events_total", "event", event)
		if n := len(where(recs, "event", event)); float64(n) != got || n == 0 {
			t.Errorf("event=%s: %d log records, %v counted", event, n, got)
		}
	}

	checkDashboard(t, fams)
	checkAlertRules(t, fams)
	// Prometheus's own linter finds nothing to say about the names,
	// types and help texts.
	lint := exec.Command(mailtest.NeedTool(t, "promtool"), "check", "metrics")
	lint.Stdin = strings.NewReader(scrapeRaw(t, curl, base+"/metrics"))
	if out, err := lint.CombinedOutput(); err != nil || len(out) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	// OpenMetrics when asked, as Prometheus asks.
	om, err := exec.Command(curl, "-sSf", "-H", "Accept: application/openmetrics-text; version=1.0.0", base+"/metrics").Output()
	if err != nil || !strings.HasSuffix(string(om), "# EOF\n") {
		t.Errorf("OpenMetrics scrape: %v, ends %q", err, tail(string(om), 40))
	}
	if out, err := exec.Command(curl, "-sS", "-w", " %{http_code}", base+"/healthz").Output(); err != nil || string(out) != "ok\n 200" {
		t.Errorf("curl /healthz: %q, %v; want ok and 200", out, err)
	}
	// A reload that cannot take the file shows; the next good one too.
	started, _ := sample(fams, "mailroom_config_last_reload_success_timestamp_seconds")
	reloaded := func(want float64) {
		t.Helper()
		if err := syscall.Kill(s.PID(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		mailtest.Eventually(t, 30*time.Second, fmt.Sprintf("mailroom_config_last_reload_successful %v", want), func() bool {
			v, _ := sample(scrape(t, curl, base+"/metrics"), "mailroom_config_last_reload_successful")
			return v == want
		})
	}
	if err := os.WriteFile(cfgPath, []byte("domains = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reloaded(0)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	reloaded(1)
	if now, _ := sample(scrape(t, curl, base+"/metrics"), "mailroom_config_last_reload_success_timestamp_seconds"); now < started {
		t.Errorf("last good reload at %v, before the start's %v", now, started)
	}

	// Closed sessions leave the gauges.
	ic.c.Close()
	mailtest.Eventually(t, 30*time.Second, "the IMAP session gone from the gauge", func() bool {
		v, ok := sample(scrape(t, curl, base+"/metrics"), "mailroom_imap_sessions")
		return ok && v == 0
	})
}

// checkDashboard: every query of contrib/grafana/mailroom.json names
// metrics that the scrape has, and groups by labels those metrics have.
func checkDashboard(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	data, err := os.ReadFile(contrib(t, "grafana/mailroom.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct{ Definition string }
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("contrib/grafana/mailroom.json: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	checkQueries(t, "contrib/grafana/mailroom.json", fams, exprs)
}

// checkAlertRules: the same for the rules of
// contrib/prometheus/mailroom.rules.yml (but up, which Prometheus makes).
func checkAlertRules(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	data, err := os.ReadFile(contrib(t, "prometheus/mailroom.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, m := range regexp.MustCompile(`(?m)^\s+expr: (.+)$`).FindAllStringSubmatch(string(data), -1) {
		if !strings.HasPrefix(m[1], "up{") {
			exprs = append(exprs, m[1])
		}
	}
	if len(exprs) < 5 {
		t.Fatalf("contrib/prometheus/mailroom.rules.yml: %d rules read", len(exprs))
	}
	checkQueries(t, "contrib/prometheus/mailroom.rules.yml", fams, exprs)
}

// checkQueries: each PromQL expression of file names metrics that the
// scrape has (a histogram's _bucket series by its family), and groups by
// labels those metrics have.
func checkQueries(t *testing.T, file string, fams map[string]*dto.MetricFamily, exprs []string) {
	t.Helper()
	names := regexp.MustCompile(`\b(?:mailroom|go|process)_[a-z0-9_]+`)
	groups := regexp.MustCompile(`\bby \(([^)]*)\)`)
	for _, e := range exprs {
		// le is a histogram's; job and instance Prometheus adds.
		labels := map[string]bool{"le": true, "job": true, "instance": true}
		found := names.FindAllString(e, -1)
		if len(found) == 0 {
			t.Errorf("%s: query %q names no metric of mailroom's", file, e)
		}
		for _, name := range found {
			f := fams[name]
			if base, ok := strings.CutSuffix(name, "_bucket"); ok && fams[base].GetType() == dto.MetricType_HISTOGRAM {
				f = fams[base]
			}
			if f == nil {
				t.Errorf("%s: query %q: no metric %s in the scrape", file, e, name)
				continue
			}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = true
				}
			}
		}
		for _, g := range groups.FindAllStringSubmatch(e, -1) {
			for _, l := range strings.Split(g[1], ",") {
				if l = strings.TrimSpace(l); !labels[l] {
					t.Errorf("%s: query %q groups by %q, which its metrics do not have", file, e, l)
				}
			}
		}
	}
}

// certNotAfter is the expiry of the PEM key pair's certificate.
func certNotAfter(t *testing.T, cert, key string) time.Time {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf.NotAfter
}

// scrapeRaw fetches url with curl.
func scrapeRaw(t *testing.T, curl, url string) string {
	t.Helper()
	out, err := exec.Command(curl, "-sSf", url).Output()
	if err != nil {
		t.Fatalf("curl %s: %v", url, err)
	}
	return string(out)
}

// scrape fetches url with curl and parses Prometheus's text format.
func scrape(t *testing.T, curl, url string) map[string]*dto.MetricFamily {
	t.Helper()
	out := scrapeRaw(t, curl, url)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(out))
	if err != nil {
		t.Fatalf("%s is not Prometheus's text format: %v\n%s", url, err, out)
	}
	return fams
}

// sample returns the value of the sample of name whose labels include
// the label/value pairs of kv: a counter's or gauge's value, a
// histogram's count.
func sample(fams map[string]*dto.MetricFamily, name string, kv ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if have[kv[i]] != kv[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}
