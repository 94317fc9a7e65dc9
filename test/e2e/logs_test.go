package e2e

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// logConfig is a server with every way in, an alias to two accounts and
// a smarthost that refuses, so that submitted remote mail stays queued.
const logConfig = `hostname = "mx.test"
data_dir = "%DATA%"
domains = ["example.org"]
[smtp]
listen = ["127.0.0.1:0"]
[submission]
listen = ["127.0.0.1:0"]
[lmtp]
listen = ["127.0.0.1:0"]
[delivery]
aliases = "%ALIASES%"
[relay]
smarthost = "127.0.0.1:1"
[log]
format = "%FORMAT%"
`

// record is one log record: its keys and values as strings.
type record map[string]string

// parseLog reads a log in either format into records.
func parseLog(t *testing.T, log, format string) []record {
	t.Helper()
	var recs []record
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if format == "json" {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("not a JSON record: %q: %v", line, err)
			}
			r := record{}
			for k, v := range m {
				switch v := v.(type) {
				case string:
					r[k] = v
				default:
					b, _ := json.Marshal(v)
					r[k] = string(b)
				}
			}
			recs = append(recs, r)
			continue
		}
		recs = append(recs, parseText(t, line))
	}
	return recs
}

// parseText splits a slog text record: key=value pairs, values quoted
// (Go syntax) when they hold spaces or quotes.
func parseText(t *testing.T, line string) record {
	t.Helper()
	r := record{}
	for line != "" {
		eq := strings.IndexByte(line, '=')
		if eq < 0 {
			t.Fatalf("not a text record: %q", line)
		}
		key := line[:eq]
		line = line[eq+1:]
		var val string
		if strings.HasPrefix(line, `"`) {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				t.Fatalf("bad quoting in %q: %v", line, err)
			}
			val, _ = strconv.Unquote(q)
			line = line[len(q):]
		} else if sp := strings.IndexByte(line, ' '); sp >= 0 {
			val, line = line[:sp], line[sp:]
		} else {
			val, line = line, ""
		}
		r[key] = val
		line = strings.TrimPrefix(line, " ")
	}
	return r
}

// where returns the records that have every key=value of kv.
func where(recs []record, kv ...string) []record {
	var out []record
next:
	for _, r := range recs {
		for i := 0; i < len(kv); i += 2 {
			if r[kv[i]] != kv[i+1] {
				continue next
			}
		}
		out = append(out, r)
	}
	return out
}

// TestLogs: one "received" record per message, with a queue id that its
// delivery records repeat and the connection it came on; every refusal
// logged once (550 5.1.1 was not logged at all); queued and dropped
// messages logged once each (twice before); text by default, JSON with
// [log] format = "json", the same keys in both; no password.
func TestLogs(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			dir := mailtest.ShortTempDir(t)
			aliases := filepath.Join(dir, "aliases")
			if err := os.WriteFile(aliases, []byte("sales: alice, bob\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := strings.NewReplacer("%ALIASES%", aliases, "%FORMAT%", format).Replace(logConfig)
			users := []string{"alice@example.org", "bob@example.org"}
			s := startServerNoPasswordLogged(t, cfg, users...)

			// MX: a message to the alias, an unknown user, a relay attempt.
			d := mailtest.Dial(t, "tcp", s.Addr(t, "smtp", false))
			d.Send("EHLO client.test")
			d.Expect("250 ")
			d.Send("MAIL FROM:<carol@remote.example>", "RCPT TO:<nobody@example.org>", "RCPT TO:<victim@elsewhere.example>",
				"RCPT TO:<sales@example.org>", "DATA")
			d.Expect("250 ")
			d.Expect("550 5.1.1")
			d.Expect("554 5.7.1")
			d.Expect("250 ")
			d.Expect("354 ")
			d.Send("Subject: hello", "", "hi", ".")
			d.Expect("250 ")
			d.Send("QUIT")
			d.Expect("221 ")

			// Submission to a remote address: queued, then dropped.
			sub := mailtest.Dial(t, "tcp", s.Addr(t, "submission", false))
			sub.Send("EHLO client.test")
			sub.Expect("250 ")
			sub.Send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice@example.org\x00"+smtpPassword)))
			sub.Expect("235 ")
			sub.Send("MAIL FROM:<alice@example.org>", "RCPT TO:<partner@elsewhere.example>", "DATA")
			sub.Expect("250 ")
			sub.Expect("250 ")
			sub.Expect("354 ")
			sub.Send("Subject: out", "", "away", ".")
			sub.Expect("250 ")

			var recs []record
			mailtest.Eventually(t, 10*time.Second, "the records of both messages", func() bool {
				recs = parseLog(t, s.Log(), format)
				return len(where(recs, "event", "received")) == 2 && len(where(recs, "event", "delivered")) == 2 &&
					len(where(recs, "event", "queued")) >= 1
			})

			// The MX message: one received record, on conn of the MX,
			// and its deliveries under the same queue id.
			mx := where(recs, "event", "received", "proto", "smtp")
			if len(mx) != 1 {
				t.Fatalf("%d received records for the MX message, want 1:\n%s", len(mx), s.Log())
			}
			id := mx[0]["queue_id"]
			if id == "" || mx[0]["conn"] == "" || mx[0]["remote"] != "[127.0.0.1]" || mx[0]["from"] != "carol@remote.example" || mx[0]["rcpts"] != "1" || mx[0]["size"] == "" {
				t.Errorf("received record %v lacks the queue id, connection, sender, recipients or size", mx[0])
			}
			if dl := where(recs, "event", "delivered", "queue_id", id); len(dl) != 2 {
				t.Errorf("%d delivered records with queue_id %s, want 2 (alice and bob):\n%s", len(dl), id, s.Log())
			}
			// Each refusal once, with its reply.
			for _, rc := range []struct{ rcpt, reply string }{{"nobody@example.org", "550 5.1.1"}, {"victim@elsewhere.example", ""}} {
				rej := where(recs, "event", "rejected", "rcpt", rc.rcpt)
				if len(rej) != 1 || !strings.HasPrefix(rej[0]["reply"], rc.reply) {
					t.Errorf("rejection of %s logged %d times (%v), want once with %q", rc.rcpt, len(rej), rej, rc.reply)
				}
			}

			// The submitted message: received and queued once each,
			// under the queue's id.
			out := where(recs, "event", "received", "proto", "submission")
			if len(out) != 1 || out[0]["user"] != "alice@example.org" {
				t.Fatalf("received records for the submitted message: %v, want one with user", out)
			}
			qid := out[0]["queue_id"]
			if q := where(recs, "event", "queued", "queue_id", qid); len(q) != 1 {
				t.Errorf("queued logged %d times for %s, want once:\n%s", len(q), qid, s.Log())
			}
			if out, code := s.Run(t, "", "queue", "drop", qid); code != 0 {
				t.Fatalf("queue drop: exit %d\n%s", code, out)
			}
			mailtest.Eventually(t, 10*time.Second, "the drop record", func() bool {
				return len(where(parseLog(t, s.Log(), format), "event", "dropped")) > 0
			})
			if dr := where(parseLog(t, s.Log(), format), "event", "dropped", "queue_id", qid); len(dr) != 1 {
				t.Errorf("dropped logged %d times, want once", len(dr))
			}
		})
	}
}
