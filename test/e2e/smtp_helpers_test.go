package e2e

import (
	"encoding/base64"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// smtpPassword is every account's password in the SMTP tests. It is
// distinctive so that the server log can be searched for it: a password
// must never be logged, in clear or in the base64 it crossed the wire in.
const smtpPassword = "Zebra-pw-4711-secret"

// smtpWrongPassword is used for failed logins, which must not be logged
// either.
const smtpWrongPassword = "Okapi-pw-0815-wrong"

// smtpConfigTemplate runs every SMTP role on loopback: the MX, submission
// with STARTTLS and submissions with implicit TLS. %LIMITS% is replaced by
// extra [limits] keys, %CERT% and %KEY% by a fresh test certificate.
const smtpConfigTemplate = `hostname = "mx.test"
data_dir = "%DATA%"
domains = ["example.org"]
[tls]
cert = "%CERT%"
key = "%KEY%"
[smtp]
listen = ["127.0.0.1:0"]
[submission]
listen = ["127.0.0.1:0"]
listen_tls = ["127.0.0.1:0"]
[limits]
max_message_bytes = 100000
max_recipients = 5
%LIMITS%
`

// smtpServer is a `mailroom serve` with the three SMTP listeners.
type smtpServer struct {
	*mailtest.Server
	Cert string // PEM file of its certificate (for clients' trust)
	MX   string // [smtp] listen
	Sub  string // [submission] listen (STARTTLS)
	Subs string // [submission] listen_tls (implicit TLS)
}

// startSMTPServer starts mailroom with smtpConfigTemplate, extra lines in
// [limits], and the given accounts (password smtpPassword). At cleanup,
// after the server stopped, its whole log is searched for the passwords.
func startSMTPServer(t *testing.T, limits string, users ...string) *smtpServer {
	t.Helper()
	certDir := mailtest.ShortTempDir(t)
	cert, key := mailtest.TestCert(t, certDir)
	cfg := strings.NewReplacer("%CERT%", cert, "%KEY%", key, "%LIMITS%", limits).Replace(smtpConfigTemplate)
	s := startServerNoPasswordLogged(t, cfg, users...)
	return &smtpServer{
		Server: s, Cert: cert,
		MX:   s.Addr(t, "smtp", false),
		Sub:  s.Addr(t, "submission", false),
		Subs: s.Addr(t, "submissions", false),
	}
}

// startServerNoPasswordLogged is startServer with password smtpPassword,
// plus the check that the log never shows a password.
func startServerNoPasswordLogged(t *testing.T, cfg string, users ...string) *mailtest.Server {
	t.Helper()
	var s *mailtest.Server
	// Registered before StartServer's own cleanup, so it runs after the
	// server has stopped and its log is complete.
	t.Cleanup(func() {
		if s != nil {
			checkNoPasswordLogged(t, s.Log(), users)
		}
	})
	s = mailtest.StartServer(t, cfg)
	for _, u := range users {
		if out, code := s.Run(t, smtpPassword+"\n", "user", "add", u); code != 0 {
			t.Fatalf("mailroom user add %s: exit %d\n%s", u, code, out)
		}
	}
	return s
}

// checkNoPasswordLogged fails if log contains a password in any form it
// was sent in: in clear, base64 alone (AUTH LOGIN) or as a PLAIN response.
func checkNoPasswordLogged(t *testing.T, log string, users []string) {
	t.Helper()
	b64 := base64.StdEncoding.EncodeToString
	for _, pw := range []string{smtpPassword, smtpWrongPassword} {
		forms := []string{pw, b64([]byte(pw))}
		for _, u := range users {
			forms = append(forms, b64([]byte("\x00"+u+"\x00"+pw)))
		}
		for _, f := range forms {
			if strings.Contains(log, f) {
				t.Errorf("the server log contains a password (%q):\n%s", f, log)
			}
		}
	}
}

// smtpSwaks runs swaks() (which accepts a greeting over TLS too) and
// returns the transcript parsed, with what went through TLS (" ~> ",
// "<~  ", "<~* ") included.
func smtpSwaks(t *testing.T, message string, args ...string) (string, transcript) {
	t.Helper()
	tr := swaks(t, message, args...)
	return tr, parseSMTPTranscript(tr)
}

// parseSMTPTranscript is parseTranscript for sessions that may use TLS.
func parseSMTPTranscript(out string) transcript {
	var tr transcript
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, " -> "), strings.HasPrefix(l, " ~> "):
			tr = append(tr, tline{client: true, text: l[4:]})
		case strings.HasPrefix(l, "<-  "), strings.HasPrefix(l, "<** "),
			strings.HasPrefix(l, "<~  "), strings.HasPrefix(l, "<~* "):
			tr = append(tr, tline{text: l[4:]})
		}
	}
	return tr
}

// lastReplies is replies() for the last time cmd was sent (EHLO is sent
// again after STARTTLS).
func (tr transcript) lastReplies(cmd string) []string {
	for i := len(tr) - 1; i >= 0; i-- {
		if l := tr[i]; l.client && strings.EqualFold(l.text, cmd) {
			var out []string
			for _, r := range tr[i+1:] {
				if r.client {
					break
				}
				out = append(out, r.text)
			}
			return out
		}
	}
	return nil
}

// wantReply fails unless the reply to cmd (its last line) starts with
// prefix.
func wantReply(t *testing.T, tr transcript, out, cmd, prefix string) {
	t.Helper()
	r, ok := tr.replies(cmd)
	if !ok || len(r) == 0 || !strings.HasPrefix(r[len(r)-1], prefix) {
		t.Errorf("reply to %q: %q, want %q...\n%s", cmd, r, prefix, out)
	}
}

// wantDataReply fails unless the reply to the message (after 354) starts
// with prefix.
func wantDataReply(t *testing.T, tr transcript, out, prefix string) {
	t.Helper()
	if r := tr.dataReplies(); len(r) != 1 || !strings.HasPrefix(r[0], prefix) {
		t.Errorf("reply to the message: %q, want one %q...\n%s", r, prefix, out)
	}
}

// smtpReceivedRE matches mailroom's Received: field for SMTP: HELO name,
// client address, protocol (RFC 3848: ESMTP, ESMTPS, ESMTPA, ESMTPSA),
// TLS details where TLS was used, id, recipient and date.
var smtpReceivedRE = regexp.MustCompile(`^Received: from (\S+) \(([^()\n]*)\)\n` +
	`\tby mx\.test \(mailroom\) with (ESMTP[SA]*)(?: \(using (TLS [0-9.]+) with cipher (\S+)\))? id ([0-9A-Za-z]+)` +
	`(?:\n\tfor <([^<>\n]+)>)?; ([^\n]+)\n$`)

// smtpReceived is what checkSMTPReceived found in a Received: field.
type smtpReceived struct {
	Helo, Remote, Proto, TLSVersion, Cipher, ID, For string
}

// checkSMTPReceived checks a Received: field that mailroom's SMTP server
// wrote: its form, protocol, recipient and date.
func checkSMTPReceived(t *testing.T, received, proto, rcpt string, since time.Time) smtpReceived {
	t.Helper()
	m := smtpReceivedRE.FindStringSubmatch(received)
	if m == nil {
		t.Fatalf("Received: field does not have the expected form:\n%s", received)
	}
	r := smtpReceived{Helo: m[1], Remote: m[2], Proto: m[3], TLSVersion: m[4], Cipher: m[5], ID: m[6], For: m[7]}
	if r.Proto != proto || r.For != rcpt || r.Remote != "[127.0.0.1]" {
		t.Errorf("Received: with %s for <%s> from (%s), want with %s for <%s> from ([127.0.0.1]):\n%s", r.Proto, r.For, r.Remote, proto, rcpt, received)
	}
	if strings.HasPrefix(r.Proto, "ESMTPS") != (r.TLSVersion != "") {
		t.Errorf("Received: with %s, TLS details %q:\n%s", r.Proto, r.TLSVersion, received)
	}
	checkDate(t, m[8], since)
	return r
}

// oneNew returns the one message that arrived in home since before, failing if there is not exactly one.
func oneNew(t *testing.T, s *mailtest.Server, home string, before []stored) trace {
	t.Helper()
	msgs := newSince(t, mailRoot(s), home, before)
	if len(msgs) != 1 {
		t.Fatalf("%s got %d new messages, want 1", home, len(msgs))
	}
	return splitTrace(t, msgs[0].Data)
}

// noNew fails if home got a message since before.
func noNew(t *testing.T, s *mailtest.Server, home string, before []stored) {
	t.Helper()
	if msgs := newSince(t, mailRoot(s), home, before); len(msgs) != 0 {
		t.Errorf("%s got %d messages, want none:\n%v", home, len(msgs), msgs)
	}
}

// homes returns the current messages of each home.
func homes(t *testing.T, s *mailtest.Server, hs ...string) map[string][]stored {
	t.Helper()
	m := map[string][]stored{}
	for _, h := range hs {
		m[h] = maildirNew(t, mailRoot(s), h)
	}
	return m
}

// noHome fails if a mail home exists for an address that has no account.
func noHome(t *testing.T, s *mailtest.Server, home string) {
	t.Helper()
	if msgs := mailtest.Messages(t, filepath.Join(s.Dir, "mail"), home); len(msgs) != 0 {
		t.Errorf("%s, which has no account, got %d messages", home, len(msgs))
	}
}
