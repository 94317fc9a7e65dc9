package e2e

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// msmtpMessage is what a mail user agent hands msmtp: no Message-ID and
// no Date, which the submission server adds (RFC 6409 §8). msmtp would
// add them itself, so the test turns that off (set_date_header,
// set_msgid_header), as it is for MUAs that leave it to the server.
var msmtpMessage = "From: Alice <alice@example.org>\n" +
	"To: Bob <bob@example.org>\n" +
	"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= via msmtp\n" +
	"MIME-Version: 1.0\n" +
	"Content-Type: text/plain; charset=utf-8\n" +
	"Content-Transfer-Encoding: 8bit\n" +
	"\n" +
	"Grüße von msmtp.\n" +
	".\n" +
	"..two dots\n" +
	"last line\n"

// TestSMTPMsmtp sends with msmtp, a real submission client, to a local
// user: over STARTTLS on the submission port and over implicit TLS on the
// submissions port, verifying the server's certificate against the test
// certificate (tls_trust_file) and authenticating as alice.
func TestSMTPMsmtp(t *testing.T) {
	t.Parallel()
	bin := mailtest.NeedTool(t, "msmtp")
	s := startSMTPServer(t, "", "alice@example.org", "bob@example.org")
	const bob = "example.org/bob"
	for _, tc := range []struct {
		name     string
		addr     string
		starttls string
	}{
		{"STARTTLS on submission", s.Sub, "on"},
		{"implicit TLS on submissions", s.Subs, "off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, port, err := net.SplitHostPort(tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			conf := filepath.Join(dir, "msmtprc")
			// msmtp refuses a configuration file with a password that
			// others can read: 0600.
			if err := os.WriteFile(conf, []byte(fmt.Sprintf(`defaults
logfile %s
account mailroom
host %s
port %s
domain client.test
from alice@example.org
auth on
user alice@example.org
password %s
tls on
tls_starttls %s
tls_trust_file %s
set_date_header off
set_msgid_header off
account default : mailroom
`, filepath.Join(dir, "msmtp.log"), host, port, smtpPassword, tc.starttls, s.Cert)), 0o600); err != nil {
				t.Fatal(err)
			}
			before := maildirNew(t, mailRoot(s.Server), bob)
			start := time.Now()
			cmd := exec.Command(bin, "-C", conf, "--debug", "bob@example.org")
			cmd.Stdin = strings.NewReader(msmtpMessage)
			out, err := cmd.CombinedOutput()
			if err != nil {
				log, _ := os.ReadFile(filepath.Join(dir, "msmtp.log"))
				t.Fatalf("msmtp: %v\n%s\nlog:\n%s", err, redact(string(out)), log)
			}
			transcript := redact(string(out))
			// It used TLS before AUTH and authenticated (msmtp picks
			// PLAIN, the best of PLAIN and LOGIN, once under TLS).
			if !strings.Contains(transcript, "AUTH PLAIN") || !strings.Contains(transcript, "235 2.0.0") {
				t.Errorf("msmtp did not authenticate with PLAIN:\n%s", transcript)
			}
			if tc.starttls == "on" {
				i, j := strings.Index(transcript, "--> STARTTLS"), strings.Index(transcript, "--> AUTH")
				if i < 0 || j < i {
					t.Errorf("msmtp did not use STARTTLS before AUTH:\n%s", transcript)
				}
			}
			got := oneNew(t, s.Server, bob, before)
			if got.ReturnPath != "<alice@example.org>" || got.DeliveredTo != "bob@example.org" {
				t.Errorf("Return-Path %s, Delivered-To %s", got.ReturnPath, got.DeliveredTo)
			}
			r := checkSMTPReceived(t, got.Received, "ESMTPSA", "bob@example.org", start)
			if r.Helo != "client.test" {
				t.Errorf("Received: from %s, want client.test", r.Helo)
			}
			// msmtp sends LF as CRLF; mailroom stores LF again.
			checkAddedIDAndDate(t, got.Rest, msmtpMessage, start)
		})
	}
}

// redact hides the password in msmtp's debug output (which shows the
// AUTH exchange) from test logs.
func redact(s string) string {
	plain := base64.StdEncoding.EncodeToString([]byte("\x00alice@example.org\x00" + smtpPassword))
	return strings.NewReplacer(smtpPassword, "<password>", plain, "<PLAIN response>").Replace(s)
}
