package mailtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// resolvConfChild names the test that runs in the mount namespace
// WithResolvConf made.
const resolvConfChild = "MAILTEST_RESOLVCONF_CHILD"

// WithResolvConf runs the calling top-level test again, in a process of
// its own whose /etc/resolv.conf is conf (a private mount namespace, by
// unshare --mount: nothing of the system changes), and reports whether
// the caller is that process. The test's body goes in
// `if mailtest.WithResolvConf(t, conf) { ... }`; the outer run fails with
// the inner one's output. It needs root and unshare: without them the test
// is skipped, or fails under CI.
func WithResolvConf(t *testing.T, conf string) bool {
	t.Helper()
	if os.Getenv(resolvConfChild) == t.Name() {
		return true
	}
	unshare := NeedTool(t, "unshare")
	NeedRoot(t, "a private /etc/resolv.conf (unshare --mount)")
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(unshare, "--mount", "sh", "-c", `mount --bind "$1" /etc/resolv.conf && shift && exec "$@"`,
		"sh", path, os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), resolvConfChild+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("%s with resolv.conf %q: %v\n%s", t.Name(), conf, err, out)
	}
	return false
}
