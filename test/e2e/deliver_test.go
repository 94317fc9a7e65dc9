package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// Exit statuses of `mailroom deliver` (sysexits.h), which MTAs act on.
const (
	exNoUser   = 67
	exTempFail = 75
)

// runner runs a mailroom subcommand with some configuration: through a
// running server's helper, or on a configuration no server uses.
type runner func(t *testing.T, stdin string, args ...string) (string, int)

// deliverSetups are the two ways `mailroom deliver` works: handing the
// message to a running `serve`, and delivering itself when none runs.
// Each returns how to run commands and the mail root.
var deliverSetups = []struct {
	name  string
	setup func(t *testing.T, config string, users ...string) (runner, string)
}{
	{"server", func(t *testing.T, config string, users ...string) (runner, string) {
		s := startServer(t, config, users...)
		return func(t *testing.T, stdin string, args ...string) (string, int) {
			t.Helper()
			return s.Run(t, stdin, args...)
		}, mailRoot(s)
	}},
	{"no server", func(t *testing.T, config string, users ...string) (runner, string) {
		cfg, dir := writeConfig(t, config)
		run := func(t *testing.T, stdin string, args ...string) (string, int) {
			t.Helper()
			return mailtest.RunBinary(t, cfg, stdin, args...)
		}
		for _, u := range users {
			if out, code := run(t, "secret\n", "user", "add", u); code != 0 {
				t.Fatalf("mailroom user add %s: exit %d\n%s", u, code, out)
			}
		}
		return run, filepath.Join(dir, "mail")
	}},
}

// localReceivedRE matches the Received: field of a message that came
// through `mailroom deliver`: no client to name, but this host, an id, the
// recipient and the date.
var localReceivedRE = regexp.MustCompile(`^Received: by mx\.test \(mailroom\) with \S+ id [0-9A-Za-z]+\n` +
	`\tfor <([^<>\n]+)>; ([^\n]+)\n$`)

// deliverMessage is what an MTA pipes to its delivery agent: LF line
// ends, a leading dot kept as is (no SMTP stuffing here), 8-bit text.
const deliverMessage = "From: Carol <carol@example.net>\n" +
	"To: alice@example.org, bob@example.org\n" +
	"Subject: via deliver\n" +
	"Message-ID: <deliver-1@example.net>\n" +
	"\n" +
	"Grüße.\n" +
	".\n" +
	"..two dots\n" +
	"last line without a newline"

// TestDeliver runs `mailroom deliver` as an MTA's delivery agent would,
// with a server running (it must hand the message over, since the server
// holds the database) and without one: exit 0 and the message stored
// exactly, with trace fields, for one and for several recipients; the
// envelope sender, or <> without -f.
func TestDeliver(t *testing.T) {
	t.Parallel()
	for _, setup := range deliverSetups {
		t.Run(setup.name, func(t *testing.T) {
			t.Parallel()
			run, root := setup.setup(t, serverConfig, "alice@example.org", "bob@example.org")
			start := time.Now()

			out, code := run(t, deliverMessage, "deliver", "-f", "carol@example.net", "alice@example.org", "bob+news@example.org")
			if code != 0 {
				t.Fatalf("mailroom deliver: exit %d, want 0\n%s", code, out)
			}
			for _, c := range []struct{ home, rcpt string }{
				{"example.org/alice", "alice@example.org"},
				{"example.org/bob", "bob+news@example.org"},
			} {
				msgs := maildirNew(t, root, c.home)
				if len(msgs) != 1 {
					t.Fatalf("%s has %d messages, want 1", c.home, len(msgs))
				}
				got := splitTrace(t, msgs[0].Data)
				if got.ReturnPath != "<carol@example.net>" || got.DeliveredTo != c.rcpt {
					t.Errorf("%s: Return-Path: %s, Delivered-To: %s; want <carol@example.net>, %s", c.home, got.ReturnPath, got.DeliveredTo, c.rcpt)
				}
				m := localReceivedRE.FindStringSubmatch(got.Received)
				if m == nil {
					t.Errorf("%s: Received: field does not have the expected form:\n%s", c.home, got.Received)
				} else {
					if m[1] != c.rcpt {
						t.Errorf("%s: Received: for <%s>, want <%s>", c.home, m[1], c.rcpt)
					}
					checkDate(t, m[2], start)
				}
				if got.Rest != deliverMessage {
					t.Errorf("%s: stored\n%q\nwant\n%q", c.home, got.Rest, deliverMessage)
				}
			}

			// No -f: the null sender, as for a bounce.
			before := maildirNew(t, root, "example.org/alice")
			if out, code := run(t, "Subject: no sender\n\nbody\n", "deliver", "alice@example.org"); code != 0 {
				t.Fatalf("mailroom deliver without -f: exit %d, want 0\n%s", code, out)
			}
			msgs := newSince(t, root, "example.org/alice", before)
			if len(msgs) != 1 {
				t.Fatalf("alice got %d messages, want 1", len(msgs))
			}
			if rp := splitTrace(t, msgs[0].Data).ReturnPath; rp != "<>" {
				t.Errorf("Return-Path without -f: %s, want <>", rp)
			}
		})
	}
}

// bigLimitConfig is serverConfig with the default size limit, for
// messages larger than a socket buffer.
var bigLimitConfig = strings.Replace(serverConfig, "max_message_bytes = 100000", "max_message_bytes = 26214400", 1)

// bigBody is larger than a unix socket's buffer (about 200 KiB), so that
// the server refusing a delivery before reading it all is noticed by the
// client while it is still writing.
var bigBody = "Subject: big\n\n" + strings.Repeat(strings.Repeat("x", 99)+"\n", 10000)

// TestDeliverUnknownUser checks that `mailroom deliver` exits 67
// (EX_NOUSER, which makes the MTA bounce) for an unknown recipient, alone
// or among known ones, for a small and a large message, and then delivers
// to nobody: the MTA's bounce covers every recipient, so a copy delivered
// anyway would arrive twice when the sender tries again.
func TestDeliverUnknownUser(t *testing.T) {
	t.Parallel()
	for _, setup := range deliverSetups {
		t.Run(setup.name, func(t *testing.T) {
			t.Parallel()
			run, root := setup.setup(t, bigLimitConfig, "alice@example.org", "bob@example.org")
			for _, c := range []struct {
				body  string
				rcpts []string
			}{
				{"Subject: unknown\n\nbody\n", []string{"nobody@example.org"}},
				{"Subject: unknown\n\nbody\n", []string{"alice@example.org", "nobody@example.org"}},
				{"Subject: unknown\n\nbody\n", []string{"nobody@example.org", "bob@example.org"}},
				{"Subject: unknown\n\nbody\n", []string{"alice@example.org", "bob@example.net"}}, // not a local domain
				{bigBody, []string{"nobody@example.org"}},
				{bigBody, []string{"alice@example.org", "nobody@example.org"}},
			} {
				out, code := run(t, c.body, append([]string{"deliver", "-f", "carol@example.net"}, c.rcpts...)...)
				if code != exNoUser {
					t.Errorf("deliver of %d bytes to %v: exit %d, want %d (EX_NOUSER)\n%s", len(c.body), c.rcpts, code, exNoUser, out)
				}
			}
			for _, home := range []string{"example.org/alice", "example.org/bob", "example.org/nobody"} {
				if msgs := maildirNew(t, root, home); len(msgs) != 0 {
					t.Errorf("%s got %d messages from deliveries that failed", home, len(msgs))
				}
			}
			if _, err := os.Stat(filepath.Join(root, "example.org", "nobody")); !os.IsNotExist(err) {
				t.Errorf("a mail home was made for the unknown recipient (stat: %v)", err)
			}
		})
	}
}

// TestDeliverTooBig checks that a message over max_message_bytes is a
// permanent failure for `mailroom deliver` (neither 0 nor EX_TEMPFAIL,
// which would make the MTA retry for days) and leaves nothing behind.
func TestDeliverTooBig(t *testing.T) {
	t.Parallel()
	for _, setup := range deliverSetups {
		t.Run(setup.name, func(t *testing.T) {
			t.Parallel()
			run, root := setup.setup(t, serverConfig, "alice@example.org")
			for _, body := range []string{
				"Subject: big\n\n" + strings.Repeat(strings.Repeat("x", 99)+"\n", maxMessageBytes/100+10),
				bigBody,
			} {
				out, code := run(t, body, "deliver", "alice@example.org")
				if code == 0 || code == exTempFail {
					t.Errorf("deliver of a %d-byte message (limit %d): exit %d, want a permanent failure\n%s", len(body), maxMessageBytes, code, out)
				}
			}
			if msgs := maildirNew(t, root, "example.org/alice"); len(msgs) != 0 {
				t.Errorf("alice got %d messages of an over-size message", len(msgs))
			}
		})
	}
}

// TestDeliverAfterServerCrash kills `mailroom serve` with SIGKILL, which
// leaves its control socket behind, and checks that `mailroom deliver`
// then delivers by itself instead of failing on the stale socket (an MTA
// would retry with exit 75 until the server came back, or for ever).
func TestDeliverAfterServerCrash(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverConfig, "alice@example.org")
	s.Kill(t)
	if _, err := os.Stat(filepath.Join(s.Dir, "control.sock")); err != nil {
		t.Fatalf("test precondition: the killed server's control socket should remain: %v", err)
	}
	out, code := s.Run(t, "Subject: after crash\n\nbody\n", "deliver", "alice@example.org")
	if code != 0 {
		t.Fatalf("mailroom deliver after the server crashed: exit %d, want 0\n%s", code, out)
	}
	if msgs := maildirNew(t, mailRoot(s), "example.org/alice"); len(msgs) != 1 {
		t.Errorf("alice has %d messages, want 1", len(msgs))
	}
}
