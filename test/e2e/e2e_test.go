// Package e2e drives the real mailroom binary with real third-party
// programs: swaks over LMTP, `mailroom deliver` as an MTA would run it, and
// a private Postfix instance relaying to mailroom over LMTP. Each test
// starts its own server in its own data_dir and reads the addresses it
// listens on from its log (mailtest.StartServer).
package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// serverConfig is the configuration most tests run with: LMTP on TCP and
// on a unix socket, and a size limit small enough to exceed cheaply.
const serverConfig = `hostname = "mx.test"
data_dir = "%DATA%"
domains = ["example.org"]
[lmtp]
listen = ["127.0.0.1:0", "unix:%DATA%/lmtp.sock"]
[limits]
max_message_bytes = 100000
`

const maxMessageBytes = 100000

// startServer starts `mailroom serve` and adds users (password "secret")
// through the running server, as an administrator would.
func startServer(t *testing.T, config string, users ...string) *mailtest.Server {
	t.Helper()
	s := mailtest.StartServer(t, config)
	for _, u := range users {
		if out, code := s.Run(t, "secret\n", "user", "add", u); code != 0 {
			t.Fatalf("mailroom user add %s: exit %d\n%s", u, code, out)
		}
	}
	return s
}

func mailRoot(s *mailtest.Server) string { return filepath.Join(s.Dir, "mail") }

// stored is one message file in a Maildir.
type stored struct {
	Name string
	Data string
}

// maildirNew returns the files in home's Maildir/new sorted by name
// (delivery order for mailroom's names), with their names. It checks what
// every file must satisfy for other Maildir readers: a Maildir++ ",S="
// size in the name, where there is one, equals the file's size (Dovecot
// trusts it for quota and for the message size it reports). Deliveries may
// go on while it reads (the queue delivers in the background): it lists
// the directory once and reads those files.
func maildirNew(t *testing.T, root, home string) []stored {
	t.Helper()
	dir := filepath.Join(root, home, "Maildir", "new")
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for _, e := range entries { // os.ReadDir sorts by name
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m := stored{Name: e.Name(), Data: string(data)}
		if sm := sizeRE.FindStringSubmatch(m.Name); sm != nil {
			if n, _ := strconv.Atoi(sm[1]); n != len(m.Data) {
				t.Errorf("%s/new/%s: S=%d in the name, but the file has %d bytes", home, m.Name, n, len(m.Data))
			}
		}
		out = append(out, m)
	}
	return out
}

// newSince returns the messages in home's Maildir/new that are not in
// before.
func newSince(t *testing.T, root, home string, before []stored) []stored {
	t.Helper()
	seen := map[string]bool{}
	for _, m := range before {
		seen[m.Name] = true
	}
	var out []stored
	for _, m := range maildirNew(t, root, home) {
		if !seen[m.Name] {
			out = append(out, m)
		}
	}
	return out
}

var sizeRE = regexp.MustCompile(`,S=(\d+)(?:[,:]|$)`)

// trace is a stored message split into the three header fields mailroom
// prepends and the rest, which must be the message as received.
type trace struct {
	ReturnPath  string // value of Return-Path:
	OriginalTo  string // value of X-Original-To: (the address as received)
	DeliveredTo string // value of Delivered-To:
	Received    string // the whole Received: field, with its folded lines and final LF
	Rest        string
}

// splitTrace splits off the Return-Path, X-Original-To, Delivered-To and
// Received fields that must open every stored message, in that order
// (Postfix local(8)'s).
func splitTrace(t *testing.T, msg string) trace {
	t.Helper()
	var tr trace
	rest := msg
	line := func(prefix string) string {
		t.Helper()
		l, r, ok := strings.Cut(rest, "\n")
		if !ok || !strings.HasPrefix(l, prefix) {
			t.Fatalf("stored message does not start with %q where expected; message:\n%s", prefix, msg)
		}
		rest = r
		return strings.TrimPrefix(l, prefix)
	}
	tr.ReturnPath = line("Return-Path: ")
	tr.OriginalTo = line("X-Original-To: ")
	tr.DeliveredTo = line("Delivered-To: ")
	first := line("Received: ")
	tr.Received = "Received: " + first + "\n"
	for strings.HasPrefix(rest, "\t") || strings.HasPrefix(rest, " ") {
		l, r, _ := strings.Cut(rest, "\n")
		tr.Received += l + "\n"
		rest = r
	}
	tr.Rest = rest
	return tr
}

// receivedRE matches mailroom's Received: field for a message that came
// over LMTP.
var receivedRE = regexp.MustCompile(`^Received: from (\S+) \(([^()\n]*)\)\n` +
	`\tby mx\.test \(mailroom\) with LMTP id ([0-9A-Za-z]+)\n` +
	`\tfor <([^<>\n]+)>; ([^\n]+)\n$`)

// checkReceived checks an LMTP Received: field: who sent it (LHLO name and
// "[ip]" or "unix socket"), for whom, and a date that is now. It returns
// the id.
func checkReceived(t *testing.T, received, helo, remote, rcpt string, since time.Time) string {
	t.Helper()
	m := receivedRE.FindStringSubmatch(received)
	if m == nil {
		t.Fatalf("Received: field does not have the expected form:\n%s", received)
	}
	if m[1] != helo || m[2] != remote || m[4] != rcpt {
		t.Errorf("Received: from %q (%q) for <%s>, want from %q (%q) for <%s>:\n%s", m[1], m[2], m[4], helo, remote, rcpt, received)
	}
	checkDate(t, m[5], since)
	return m[3]
}

// checkDate checks an RFC 5322 date (as time.RFC1123Z writes it) lies
// between since and now, give or take the second it is rounded to.
func checkDate(t *testing.T, date string, since time.Time) {
	t.Helper()
	d, err := time.Parse(time.RFC1123Z, date)
	if err != nil {
		t.Errorf("Received: date %q: %v", date, err)
		return
	}
	if d.Before(since.Add(-2*time.Second)) || d.After(time.Now().Add(2*time.Second)) {
		t.Errorf("Received: date %s is not between %s and now", date, since.Format(time.RFC1123Z))
	}
}

// crlf turns a message written with LF into its wire form.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// lf is what mailroom stores for a message received as s.
func lf(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

// swaks runs swaks with the message (in wire form, ending in CRLF) on stdin
// ("--data -") and returns its transcript. It fails the test if swaks could
// not talk to the server at all; the caller judges the replies.
//
// swaks sends its data followed by "\r\n.\r\n", so the message's own
// final CRLF is taken off first; it also removes a final "." line and
// turns the two characters `\n` into a line break, so messages here
// have neither.
func swaks(t *testing.T, message string, args ...string) string {
	t.Helper()
	bin := mailtest.NeedTool(t, "swaks")
	if !strings.HasSuffix(message, "\r\n") {
		t.Fatalf("swaks: the message must end with CRLF")
	}
	args = append([]string{"--timeout", "20", "--data", "-"}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(strings.TrimSuffix(message, "\r\n"))
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("swaks: %v", err)
	}
	// swaks echoes the data lines with their CRLF.
	tr := strings.ReplaceAll(string(out), "\r\n", "\n")
	// "<~" is a greeting over TLS (--tls-on-connect).
	if !strings.Contains(tr, "<-  220 ") && !strings.Contains(tr, "<~  220 ") {
		t.Fatalf("swaks did not get a greeting (%v):\n%s", err, tr)
	}
	return tr
}

// lmtpSwaks delivers message over LMTP to addr (TCP "host:port" or, with
// unix, a socket path) with swaks, which LHLOs as client.test.
func lmtpSwaks(t *testing.T, addr string, unix bool, message, from string, to ...string) string {
	t.Helper()
	args := []string{"--protocol", "LMTP", "--helo", "client.test", "--from", from, "--to", strings.Join(to, ",")}
	if unix {
		args = append(args, "--socket", addr)
	} else {
		args = append(args, "--server", addr)
	}
	return swaks(t, message, args...)
}

// transcript is swaks' output parsed into what the client sent and what the
// server answered.
type transcript []tline

type tline struct {
	client bool   // " -> ": sent by swaks; else "<-  " or "<** ": a reply
	text   string // without the prefix
}

func parseTranscript(out string) transcript {
	var tr transcript
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, " -> "):
			tr = append(tr, tline{client: true, text: l[4:]})
		case strings.HasPrefix(l, "<-  "), strings.HasPrefix(l, "<** "):
			tr = append(tr, tline{text: l[4:]})
		}
	}
	return tr
}

// replies returns the reply lines to the first client line equal to cmd
// (case-insensitive), or nil and false if swaks never sent it.
func (tr transcript) replies(cmd string) ([]string, bool) {
	for i, l := range tr {
		if l.client && strings.EqualFold(l.text, cmd) {
			var out []string
			for _, r := range tr[i+1:] {
				if r.client {
					break
				}
				out = append(out, r.text)
			}
			return out, true
		}
	}
	return nil, false
}

// dataReplies returns the replies to the message itself: every reply after
// DATA's 354 until swaks says QUIT (or gives up). In LMTP there is one per
// accepted recipient.
func (tr transcript) dataReplies() []string {
	var out []string
	started := false
	for _, l := range tr {
		switch {
		case l.client && strings.EqualFold(l.text, "QUIT"):
			return out
		case !l.client && strings.HasPrefix(l.text, "354 "):
			started = true
		case !l.client && started:
			out = append(out, l.text)
		}
	}
	return out
}

// writeConfig writes a configuration for commands run without `serve`,
// with %DATA% replaced by a fresh data_dir, like mailtest.StartServer.
func writeConfig(t *testing.T, config string) (path, dir string) {
	t.Helper()
	return mailtest.WriteConfig(t, config)
}
