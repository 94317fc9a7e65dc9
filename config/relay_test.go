package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestQueueSettings(t *testing.T) {
	cases := []struct {
		name string
		q    Queue
		want QueueSettings
		err  string
	}{
		{"defaults", Queue{}, QueueSettings{Retry: DefaultRetry(), MaxLifetime: DefaultMaxLifetime, DelayWarning: DefaultDelayWarning, Concurrency: DefaultConcurrency}, ""},
		{"set", Queue{Retry: []string{"1m", "90s", "2h"}, MaxLifetime: "4d", DelayWarning: "0", Concurrency: 4},
			QueueSettings{Retry: []time.Duration{time.Minute, 90 * time.Second, 2 * time.Hour}, MaxLifetime: 96 * time.Hour, DelayWarning: 0, Concurrency: 4}, ""},
		{"bad retry", Queue{Retry: []string{"soon"}}, QueueSettings{}, `queue.retry[0]: "soon"`},
		{"zero retry", Queue{Retry: []string{"0s"}}, QueueSettings{}, `queue.retry[0]: "0s"`},
		{"bad lifetime", Queue{MaxLifetime: "-1h"}, QueueSettings{}, "queue.max_lifetime"},
		{"bad days", Queue{MaxLifetime: "xd"}, QueueSettings{}, "queue.max_lifetime"},
		{"bad warning", Queue{DelayWarning: "4"}, QueueSettings{}, "queue.delay_warning"},
		{"bad concurrency", Queue{Concurrency: -1}, QueueSettings{}, "queue.concurrency"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.q.Settings()
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one naming %q", err, c.err)
				}
				if errs := c.q.Validate("f.toml"); len(errs) == 0 || !strings.HasPrefix(errs[0].Error(), "f.toml: ") {
					t.Errorf("Validate: %v", errs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Retry, c.want.Retry) || got.MaxLifetime != c.want.MaxLifetime ||
				got.DelayWarning != c.want.DelayWarning || got.Concurrency != c.want.Concurrency {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestRelaySettingsPasswordFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pw"), []byte("s3cret\r\nignored\n"), 0o600)
	cfgPath := filepath.Join(dir, "mailroom.toml")
	os.WriteFile(cfgPath, []byte(`hostname = "mx.test"
data_dir = "data"
domains = ["example.org"]
[relay]
smarthost = "relay.example:587"
username = "me"
password_file = "pw"
`), 0o600)
	cfg, err := Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := cfg.Relay.Settings()
	if err != nil {
		t.Fatal(err)
	}
	if rs.Password != "s3cret" || rs.Username != "me" || rs.MXPort != 25 || rs.ImplicitTLS {
		t.Errorf("settings %+v", rs)
	}
}

// TestDefaultRetryIsACopy: changing the retry list one caller got does
// not change the default that the next one gets.
func TestDefaultRetryIsACopy(t *testing.T) {
	got, err := Queue{}.Settings()
	if err != nil {
		t.Fatal(err)
	}
	got.Retry[0] = time.Nanosecond
	if again := DefaultRetry(); again[0] != 5*time.Minute {
		t.Errorf("the default changed to %v through a returned slice", again[0])
	}
}
