package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// TestAlertRules: contrib/prometheus/mailroom.rules.yml passes promtool's
// check, and promtool's rule unit tests (testdata/prometheus/rules_test.yml)
// see each alert fire on the series that should raise it, with its
// labels and text, and none on a healthy server. TestMetrics checks that
// the rules name metrics and labels a real scrape has.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool := mailtest.NeedTool(t, "promtool")
	rules := contrib(t, "prometheus/mailroom.rules.yml")
	if out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	tmpl, err := os.ReadFile(filepath.Join("testdata", "prometheus", "rules_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := filepath.Join(t.TempDir(), "rules_test.yml")
	if err := os.WriteFile(tests, []byte(strings.ReplaceAll(string(tmpl), "%RULES%", rules)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "test", "rules", tests).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// TestPrometheusScrapes: a real Prometheus server scrapes mailroom (it
// negotiates the format itself) and evaluates contrib's alerting rules
// on what it stored: the target is up, a delivery over LMTP shows in its
// queries, and every rule evaluates without error.
func TestPrometheusScrapes(t *testing.T) {
	t.Parallel()
	prom := mailtest.NeedTool(t, "prometheus")
	s := startServer(t, `hostname = "mx.test"
data_dir = "%DATA%"
domains = ["example.org"]
[lmtp]
listen = ["127.0.0.1:0"]
[metrics]
listen = "127.0.0.1:0"
`, "alice@example.org")
	lmtpSwaks(t, s.Addr(t, "lmtp", false), false, crlf("Subject: scraped\n\nhello\n"), "a@remote.test", "alice@example.org")

	dir := t.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, []byte(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - `+contrib(t, "prometheus/mailroom.rules.yml")+`
scrape_configs:
  - job_name: mailroom
    static_configs:
      - targets: ["`+s.Addr(t, "metrics", false)+`"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	web := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(prom, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+web, "--log.level=warn")
	var log mailtest.LockedBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", log.String())
		}
	})

	query := func(q string) (float64, bool) {
		resp, err := http.Get("http://" + web + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || len(r.Data.Result) != 1 {
			return 0, false
		}
		str, _ := r.Data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		return v, err == nil
	}
	mailtest.Eventually(t, 60*time.Second, "Prometheus to scrape mailroom", func() bool {
		v, ok := query(`up{job="mailroom"}`)
		return ok && v == 1
	})
	for q, want := range map[string]float64{
		`mailroom_messages_received_total{proto="lmtp"}`:                                 1,
		`mailroom_deliveries_total{path="local", result="delivered"}`:                    1,
		`mailroom_delivery_duration_seconds_count{path="local"}`:                         1,
		`sum(mailroom_connections_total{listener="lmtp"})`:                               1,
		`count(mailroom_build_info{job="mailroom"})`:                                     1,
		`mailroom_config_last_reload_successful`:                                         1,
		`scrape_samples_scraped{job="mailroom"} > bool 50`:                               1,
		`count(ALERTS{alertstate="firing"}) or vector(0)`:                                0,
		`count(go_goroutines{job="mailroom"}) + count(process_open_fds{job="mailroom"})`: 2,
	} {
		if got, ok := query(q); !ok || got != want {
			t.Errorf("Prometheus: %s = %v (answered %v), want %v", q, got, ok, want)
		}
	}
	// Every rule has been evaluated on mailroom's series, without error.
	mailtest.Eventually(t, 30*time.Second, "every rule evaluated", func() bool {
		resp, err := http.Get("http://" + web + "/api/v1/rules")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name, Health, LastError string
					}
				}
			}
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || len(r.Data.Groups) != 1 {
			return false
		}
		for _, rule := range r.Data.Groups[0].Rules {
			if rule.Health == "err" {
				t.Fatalf("rule %s: %s", rule.Name, rule.LastError)
			}
			if rule.Health != "ok" {
				return false
			}
		}
		return len(r.Data.Groups[0].Rules) > 5
	})
}
