package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/internal/mailtest"
)

// imapConfigTemplate runs IMAP on loopback, in clear (STARTTLS offered,
// since [tls] is set) and with implicit TLS, with LMTP on TCP to deliver
// the mail it serves. The data directory is a subdirectory of the test's
// directory, so that a path escaping it by a level or two still lands
// where the test looks (TestIMAPBadInput walks the whole test directory).
// %EXTRA% is replaced by more tables or keys at the end.
const imapConfigTemplate = `hostname = "mx.test"
data_dir = "%DATA%/data"
domains = ["example.org"]
[tls]
cert = "%CERT%"
key = "%KEY%"
[lmtp]
listen = ["127.0.0.1:0"]
[imap]
listen = ["127.0.0.1:0"]
listen_tls = ["127.0.0.1:0"]
[limits]
max_message_bytes = 100000
%EXTRA%
`

// imapServer is a `mailroom serve` with IMAP, IMAPS and LMTP listeners.
type imapServer struct {
	*mailtest.Server
	DataDir string // data_dir (Server.Dir is the test directory above it)
	Cert    string // PEM file of its certificate, for clients' trust
	IMAP    string // [imap] listen: plain, STARTTLS offered
	IMAPS   string // [imap] listen_tls: implicit TLS
	LMTP    string // [lmtp] listen, TCP
}

// startIMAPServer starts mailroom with imapConfigTemplate (extra appended)
// and the given accounts, password smtpPassword. At cleanup, after the
// server stopped, its whole log is searched for the passwords (LOGIN and
// AUTHENTICATE PLAIN must not be logged, not even in a wire trace).
func startIMAPServer(t *testing.T, extra string, users ...string) *imapServer {
	t.Helper()
	certDir := mailtest.ShortTempDir(t)
	cert, key := mailtest.TestCert(t, certDir)
	cfg := strings.NewReplacer("%CERT%", cert, "%KEY%", key, "%EXTRA%", extra).Replace(imapConfigTemplate)
	cfgPath, dir := mailtest.WriteConfig(t, cfg)
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	var s *mailtest.Server
	t.Cleanup(func() {
		if s != nil {
			checkNoPasswordLogged(t, s.Log(), users)
		}
	})
	s = mailtest.StartServerConfig(t, cfgPath, dir)
	for _, u := range users {
		if out, code := s.Run(t, smtpPassword+"\n", "user", "add", u); code != 0 {
			t.Fatalf("mailroom user add %s: exit %d\n%s", u, code, out)
		}
	}
	return imapServerOf(t, s, cert)
}

// imapServerOf reads the listening addresses of a started server.
func imapServerOf(t *testing.T, s *mailtest.Server, cert string) *imapServer {
	t.Helper()
	return &imapServer{
		Server:  s,
		DataDir: filepath.Join(s.Dir, "data"),
		Cert:    cert,
		IMAP:    s.Addr(t, "imap", false),
		IMAPS:   s.Addr(t, "imaps", false),
		LMTP:    s.Addr(t, "lmtp", false),
	}
}

// restart stops the server (SIGTERM, or SIGKILL with kill) and starts it
// again on the same configuration and data; the new one listens on new
// ports.
func (s *imapServer) restart(t *testing.T, kill bool) *imapServer {
	t.Helper()
	if kill {
		s.Kill(t)
	} else {
		s.Stop(t)
	}
	return imapServerOf(t, mailtest.StartServerConfig(t, s.Config, s.Dir), s.Cert)
}

// maildir is the Maildir of a mail home such as "example.org/alice".
func (s *imapServer) maildir(home string) string {
	return filepath.Join(s.DataDir, "mail", home, "Maildir")
}

// host and port of a "host:port" address, for tools that take them apart.
func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// deliverLMTP delivers msg (LF line ends; sent as CRLF) to rcpt over LMTP
// with go-smtp's client and returns the moment the 250 for rcpt arrived.
// Anything but a 250 fails the test.
func deliverLMTP(t *testing.T, addr, from, rcpt, msg string) time.Time {
	t.Helper()
	at, err := lmtpSend(addr, from, rcpt, msg)
	if err != nil {
		t.Fatalf("delivery to %s over LMTP: %v", rcpt, err)
	}
	return at
}

// lmtpSend is deliverLMTP without a testing.T, for goroutines: it
// returns the moment of the 250 or an error.
func lmtpSend(addr, from, rcpt, msg string) (time.Time, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return time.Time{}, err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := gosmtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return time.Time{}, fmt.Errorf("LHLO: %w", err)
	}
	if err := c.Mail(from, nil); err != nil {
		return time.Time{}, fmt.Errorf("MAIL FROM:<%s>: %w", from, err)
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return time.Time{}, fmt.Errorf("RCPT TO:<%s>: %w", rcpt, err)
	}
	w, err := c.Data()
	if err != nil {
		return time.Time{}, fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write([]byte(crlf(msg))); err != nil {
		return time.Time{}, fmt.Errorf("write message: %w", err)
	}
	resp, err := w.CloseWithLMTPResponse()
	at := time.Now()
	if err != nil {
		return time.Time{}, fmt.Errorf("end of message: %w", err)
	}
	if _, ok := resp[rcpt]; !ok {
		return time.Time{}, fmt.Errorf("no 250 for %s (replies %v)", rcpt, resp)
	}
	c.Quit()
	return at, nil
}

// imapRaw is an IMAP connection driven line by line, for tests that must
// write exact bytes and see every response, including whether the server
// hangs up.
type imapRaw struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
	n int
}

// dialIMAP connects to addr (implicit TLS with tlsConf non-nil) and reads
// the greeting, which must be "* OK".
func dialIMAP(t *testing.T, addr string, tlsConf *tls.Config) *imapRaw {
	t.Helper()
	var c net.Conn
	var err error
	if tlsConf != nil {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, tlsConf)
	} else {
		c, err = net.DialTimeout("tcp", addr, 10*time.Second)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	ic := &imapRaw{t: t, c: c, r: bufio.NewReader(c)}
	if l, ok := ic.line(); !ok || !strings.HasPrefix(l, "* OK") {
		t.Fatalf("IMAP greeting %q", l)
	}
	return ic
}

// send writes s as it is.
func (ic *imapRaw) send(s string) {
	ic.t.Helper()
	// Each command gets its own minute: a test may keep one connection
	// through many slow steps (logins under -race on a loaded machine).
	ic.c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := ic.c.Write([]byte(s)); err != nil {
		ic.t.Fatalf("write %q: %v", abbrev(s), err)
	}
}

// line reads one response line without its CRLF, with the contents of
// any literals it announces put in place of their "{n}" (followed by the
// rest of the line); ok is false if the connection ended first.
func (ic *imapRaw) line() (string, bool) {
	var out strings.Builder
	for {
		l, err := ic.r.ReadString('\n')
		if err != nil {
			out.WriteString(l)
			return out.String(), false
		}
		l = strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r")
		m := literalRE.FindStringSubmatch(l)
		if m == nil {
			out.WriteString(l)
			return out.String(), true
		}
		n, _ := strconv.Atoi(m[1])
		out.WriteString(l[:len(l)-len(m[0])])
		buf := make([]byte, n)
		if _, err := io.ReadFull(ic.r, buf); err != nil {
			return out.String(), false
		}
		out.Write(buf)
	}
}

var literalRE = regexp.MustCompile(`~?\{(\d+)\}$`)

// nextTag returns a fresh tag.
func (ic *imapRaw) nextTag() string {
	ic.n++
	return fmt.Sprintf("t%d", ic.n)
}

// cmd sends one command line (without tag and CRLF) and returns the
// untagged lines before the tagged reply and that reply without its tag
// ("OK ...", "NO ...", "BAD ..."). A connection closed first fails the
// test, naming the command.
func (ic *imapRaw) cmd(command string) (untagged []string, status string) {
	ic.t.Helper()
	tag := ic.nextTag()
	ic.send(tag + " " + command + "\r\n")
	return ic.reply(tag, command)
}

// reply reads until the tagged reply to tag.
func (ic *imapRaw) reply(tag, what string) (untagged []string, status string) {
	ic.t.Helper()
	for {
		l, ok := ic.line()
		if !ok {
			ic.t.Fatalf("connection closed waiting for the reply to %q (after %q)", abbrev(what), untagged)
		}
		if rest, found := strings.CutPrefix(l, tag+" "); found {
			return untagged, rest
		}
		untagged = append(untagged, l)
	}
}

// ok runs command and fails unless it is answered OK.
func (ic *imapRaw) ok(command string) []string {
	ic.t.Helper()
	u, st := ic.cmd(command)
	if !strings.HasPrefix(st, "OK") {
		ic.t.Fatalf("%s: %s (untagged %q), want OK", abbrev(command), st, u)
	}
	return u
}

// refused runs command and fails unless it is answered NO or BAD, with a
// clear reason rather than the library's catch-all for errors it does not
// know ([SERVERBUG] Internal server error).
func (ic *imapRaw) refused(command string) string {
	ic.t.Helper()
	u, st := ic.cmd(command)
	checkRefusal(ic.t, command, st, u)
	return st
}

func checkRefusal(t *testing.T, what, st string, untagged []string) {
	t.Helper()
	if !strings.HasPrefix(st, "NO") && !strings.HasPrefix(st, "BAD") {
		t.Errorf("%s: %s (untagged %q), want NO or BAD", abbrev(what), st, untagged)
	}
	if strings.Contains(st, "SERVERBUG") {
		t.Errorf("%s: %s: an internal error, want a clear refusal", abbrev(what), st)
	}
}

// withLiteral sends prefix, then data as a synchronizing literal, then
// suffix and CRLF, as one command. If the server refuses the command
// before the literal (no "+" continuation), data is not sent. It returns
// the tagged reply and whether the server asked for the literal.
func (ic *imapRaw) withLiteral(prefix string, data []byte, suffix string) (status string, sent bool) {
	ic.t.Helper()
	tag := ic.nextTag()
	ic.send(fmt.Sprintf("%s %s{%d}\r\n", tag, prefix, len(data)))
	for {
		l, ok := ic.line()
		if !ok {
			ic.t.Fatalf("connection closed after %q{%d}", prefix, len(data))
		}
		if strings.HasPrefix(l, "+") {
			break
		}
		if rest, found := strings.CutPrefix(l, tag+" "); found {
			return rest, false
		}
	}
	ic.send(string(data) + suffix + "\r\n")
	_, st := ic.reply(tag, prefix)
	return st, true
}

// login logs in with LOGIN and the tests' password.
func (ic *imapRaw) login(user string) {
	ic.t.Helper()
	ic.ok(fmt.Sprintf("LOGIN %s %s", user, smtpPassword))
}

// capabilities returns the CAPABILITY list in the current state.
func (ic *imapRaw) capabilities() []string {
	ic.t.Helper()
	for _, l := range ic.ok("CAPABILITY") {
		if rest, ok := strings.CutPrefix(l, "* CAPABILITY "); ok {
			return strings.Fields(rest)
		}
	}
	ic.t.Fatal("no CAPABILITY response")
	return nil
}

// abbrev shortens long commands for messages.
func abbrev(s string) string {
	if len(s) > 80 {
		return fmt.Sprintf("%s... (%d bytes)", s[:60], len(s))
	}
	return s
}

// bind makes ic report failures to t (a subtest) until the returned
// function restores the previous test.
func (ic *imapRaw) bind(t *testing.T) (restore func()) {
	old := ic.t
	ic.t = t
	return func() { ic.t = old }
}

// tryLiteral is withLiteral for input that may make the server hang up:
// alive is false if the connection ended before the tagged reply, which
// is then "".
func (ic *imapRaw) tryLiteral(prefix string, data []byte, suffix string) (status string, alive bool) {
	tag := ic.nextTag()
	if _, err := fmt.Fprintf(ic.c, "%s %s{%d}\r\n", tag, prefix, len(data)); err != nil {
		return "", false
	}
	for {
		l, ok := ic.line()
		if !ok {
			return "", false
		}
		if strings.HasPrefix(l, "+") {
			break
		}
		if rest, found := strings.CutPrefix(l, tag+" "); found {
			return rest, true
		}
	}
	if _, err := ic.c.Write([]byte(string(data) + suffix + "\r\n")); err != nil {
		return "", false
	}
	for {
		l, ok := ic.line()
		if !ok {
			return "", false
		}
		if rest, found := strings.CutPrefix(l, tag+" "); found {
			return rest, true
		}
	}
}
