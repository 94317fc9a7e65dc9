package e2e

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// eicar is the EICAR anti-virus test file: harmless, and detected as a
// virus by every scanner that has its signature.
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// clamav is a private clamd and the clamav-milter that asks it.
type clamav struct {
	clamd, milter *filter
}

// startClamav runs Debian's clamd and clamav-milter with their own
// configuration, database and sockets. The official signature database
// comes from the network (freshclam), so clamd loads a one-line database
// of the test's own that knows the EICAR file (an .ndb body signature,
// matched wherever the file appears, decoded from a MIME part or not).
// clamav-milter rejects what clamd finds (OnInfected Reject), defers when
// it cannot ask clamd (OnFail Defer) and adds its X-Virus-Status fields.
func startClamav(t *testing.T) *clamav {
	t.Helper()
	clamd := mailtest.NeedTool(t, "clamd")
	milter := mailtest.NeedTool(t, "clamav-milter")
	dir := mailtest.ShortTempDir(t)
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		t.Fatal(err)
	}
	sig := "Mailroom.Test.EICAR:0:*:" + hex.EncodeToString([]byte(eicar)) + "\n"
	write := func(name, data string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("db/mailroom-test.ndb", sig)
	clamdSock := filepath.Join(dir, "clamd.sock")
	clamdConf := write("clamd.conf", fmt.Sprintf(`LocalSocket %[1]s/clamd.sock
DatabaseDirectory %[1]s/db
Foreground yes
LogFile %[1]s/clamd.log
PidFile %[1]s/clamd.pid
TemporaryDirectory %[1]s
`, dir))
	milterSock := filepath.Join(dir, "milter.sock")
	milterConf := write("clamav-milter.conf", fmt.Sprintf(`MilterSocket unix:%[1]s/milter.sock
ClamdSocket unix:%[1]s/clamd.sock
Foreground yes
PidFile %[1]s/milter.pid
LogFile %[1]s/milter.log
TemporaryDirectory %[1]s
OnInfected Reject
OnFail Defer
OnClean Accept
AddHeader Replace
RejectMsg "Virus found: %%v"
`, dir))
	c := &clamav{}
	c.clamd = startFilter(t, "clamd", clamdSock, filepath.Join(dir, "clamd.log"), 2*time.Minute, nil, clamd, "-c", clamdConf)
	c.milter = startFilter(t, "clamav-milter", milterSock, filepath.Join(dir, "milter.log"), time.Minute, nil, milter, "-c", milterConf)
	return c
}

// TestClamavMilter plugs clamav-milter into the MX: a message carrying
// the EICAR file, in its body or as a base64 attachment, is refused with
// the milter's 5xx naming the signature and is not delivered; a clean one
// is delivered with the fields clamav-milter adds. With clamd gone, the
// milter's tempfail is a 451 and nothing is lost or refused for good.
func TestClamavMilter(t *testing.T) {
	t.Parallel()
	cv := startClamav(t)
	s := startServer(t, fmt.Sprintf(`hostname = "mx.example.org"
data_dir = "%%DATA%%"
domains = ["example.org"]
[smtp]
listen = ["127.0.0.1:0"]
milters = [%q]
milter_timeout = "60s"
`, cv.milter.Socket), "alice@example.org")
	send := func(msg string) string {
		t.Helper()
		_, tr := smtpSwaks(t, msg, "--server", s.Addr(t, "smtp", false), "--helo", "client.test", "--from", "bob@example.net", "--to", "alice@example.org")
		r := tr.dataReplies()
		if len(r) != 1 {
			t.Fatalf("replies %q", r)
		}
		return r[0]
	}
	inbox := func() []string { return mailtest.Messages(t, mailRoot(s), "example.org/alice") }

	attached := crlf("From: <bob@example.net>\nTo: alice@example.org\nSubject: attachment\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Type: text/plain\n\nSee the file.\n" +
		"--b1\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=eicar.com\n" +
		"Content-Transfer-Encoding: base64\n\n" + base64.StdEncoding.EncodeToString([]byte(eicar)) + "\n--b1--\n")
	for name, msg := range map[string]string{
		"in the body": crlf("From: <bob@example.net>\nTo: alice@example.org\nSubject: body\n\n" + eicar + "\n"),
		"attached":    attached,
	} {
		if r := send(msg); !strings.HasPrefix(r, "5") || !strings.Contains(r, "Mailroom.Test.EICAR") {
			t.Errorf("EICAR %s: %q, want a 5xx naming the signature", name, r)
		}
	}
	if n := len(inbox()); n != 0 {
		t.Fatalf("%d infected messages delivered", n)
	}

	if r := send(checkedMessage("bob@example.net", "")); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("clean message: %q, want 250", r)
	}
	m := inbox()
	if len(m) != 1 || !strings.Contains(m[0], "X-Virus-Status: Clean") || !strings.Contains(m[0], "X-Virus-Scanned: clamav-milter") {
		t.Fatalf("the clean message lacks clamav-milter's fields:\n%q", m)
	}

	// clamd stops: clamav-milter cannot scan and answers tempfail
	// (OnFail Defer), which the client gets as a 451.
	syscall.Kill(-cv.clamd.cmd.Process.Pid, syscall.SIGKILL)
	mailtest.Eventually(t, 30*time.Second, "clamd gone", func() bool {
		c, err := net.Dial("unix", strings.TrimPrefix(cv.clamd.Socket, "unix:"))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if r := send(checkedMessage("bob@example.net", "")); !strings.HasPrefix(r, "451 4.") {
		t.Errorf("clamd gone: %q, want 451", r)
	}
	if n := len(inbox()); n != 1 {
		t.Errorf("%d messages delivered with clamd gone, want none more than the clean one", n)
	}
}
