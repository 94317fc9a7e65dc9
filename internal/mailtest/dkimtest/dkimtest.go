// Package dkimtest verifies DKIM signatures with independent
// implementations, dkimpy and opendkim, their keys served by a fake DNS
// server: the judges of what mailroom signs.
package dkimtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/fakedns"
)

var opendkimSeq atomic.Uint32

// DKIMPy verifies every DKIM signature of msg with Python's dkimpy
// (Debian python3-dkim), the keys coming from the DNS server at dnsAddr
// (a fakedns.Server). It returns dkimpy's report, one line per signature
// ("d=example.org s=sel a=rsa-sha256 pass"), and whether there was a
// signature and all passed.
func DKIMPy(t testing.TB, dnsAddr, msg string) (string, bool) {
	t.Helper()
	py := mailtest.NeedPython(t, "dkim", "dns.query")
	host, port, _ := strings.Cut(dnsAddr, ":")
	cmd := exec.Command(py, filepath.Join(mailtest.ModuleRoot(t), "internal", "mailtest", "dkimtest", "dkimpy_verify.py"), host, port)
	cmd.Stdin = strings.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return string(out), err == nil
}

// Opendkim verifies msg with libopendkim (opendkim-testmsg), which can
// only ask the system's resolver: port 53 of the servers in resolv.conf.
// So it runs in a mount namespace of its own whose /etc/resolv.conf names
// a fake DNS server, started here on 127.53.x.y:53, that serves the TXT
// records given (name -> value). That takes root; without it the test
// is skipped, or fails under CI. The error is nil when opendkim-testmsg
// verified the message.
func Opendkim(t testing.TB, records map[string]string, msg string) (string, error) {
	t.Helper()
	testmsg := mailtest.NeedTool(t, "opendkim-testmsg")
	unshare := mailtest.NeedTool(t, "unshare")
	mailtest.NeedRoot(t, "a private resolv.conf and a DNS server on port 53")
	// An address of its own for each call (and each test process), so
	// that servers of calls not yet cleaned up do not hold port 53.
	n := opendkimSeq.Add(1)
	ip := fmt.Sprintf("127.%d.%d.%d", 53+n%150, os.Getpid()>>8&0xff, os.Getpid()&0xff)
	srv := fakedns.StartAt(t, ip+":53")
	for name, value := range records {
		srv.AddTXT(name, value)
	}
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+ip+"\noptions attempts:1 timeout:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(unshare, "--mount", "sh", "-c",
		`mount --bind "$1" /etc/resolv.conf && exec "$2" -t "$3"`, "sh", resolv, testmsg, dir)
	cmd.Stdin = strings.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if err == nil && srv.Queries() == 0 {
		t.Fatal("opendkim-testmsg passed without asking the fake DNS server for a key")
	}
	return string(out), err
}

// SignDKIMPy signs msg with dkimpy as domain and selector, with the PEM
// private key in keyFile (RSA, PKCS #1), and returns the signed message:
// mail as another implementation signs it, for testing verification.
func SignDKIMPy(t testing.TB, domain, selector, keyFile, msg string) string {
	t.Helper()
	py := mailtest.NeedPython(t, "dkim")
	cmd := exec.Command(py, filepath.Join(mailtest.ModuleRoot(t), "internal", "mailtest", "dkimtest", "dkimpy_sign.py"), domain, selector, keyFile)
	cmd.Stdin = strings.NewReader(msg)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimpy sign: %v\n%s", err, stderr.String())
	}
	return string(out)
}
