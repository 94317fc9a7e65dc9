package queue

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestDSNGolden pins the exact text of a bounce and a delay warning; the
// random boundary and Message-ID are replaced by placeholders.
func TestDSNGolden(t *testing.T) {
	q := &Queue{opts: Options{Hostname: "mx.test", MaxLifetime: 5 * 24 * time.Hour}}
	created := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	rec := &record{ID: "0123456789ABCDEF", From: "alice@example.org", Created: created, Rcpts: []rcptState{
		{Addr: "bob@example.net", State: StateFailed, Status: "5.1.1", RemoteMTA: "mx.example.net",
			Diag:      "smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in virtual mailbox table, and this line is long enough to fold",
			LastError: "mx.example.net said after RCPT TO:<bob@example.net>: 550 5.1.1 no such user"},
		{Addr: "carol@example.net", State: StatePending, Status: "4.4.1",
			LastError: "mx.example.net: connect: connection refused"},
		{Addr: "jöran@bäcker.example", State: StateFailed, Status: "5.1.2", Diag: "X-Mailroom; no MX record for bäcker.example",
			LastError: "no MX record"},
	}}
	header := "From: Alice <alice@example.org>\r\nSubject: hello\r\nMessage-ID: <m1@example.org>\r\n"
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	random := regexp.MustCompile(`[0-9A-Z]{16}(/mx\.test|\.dsn@)`)
	for _, c := range []struct {
		name    string
		idx     []int
		delayed bool
	}{
		{"dsn-failed", []int{0, 2}, false},
		{"dsn-delayed", []int{1}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := q.writeDSN(&b, rec, c.idx, c.delayed, header, now); err != nil {
				t.Fatal(err)
			}
			got := random.ReplaceAllString(b.String(), "RANDOM$1")
			for _, l := range strings.Split(got, "\r\n") {
				if len(l) > 998 || strings.Contains(l, "\n") {
					t.Errorf("bad line %q", l)
				}
			}
			golden := filepath.Join("testdata", c.name+".golden")
			if *update {
				os.WriteFile(golden, []byte(got), 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("DSN differs from %s (go test ./queue -run TestDSNGolden -update to accept):\n%s", golden, got)
			}
			parseDSN(t, got)
		})
	}
}
