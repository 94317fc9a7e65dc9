package mailtest

import (
	"os"
	"path/filepath"
	"testing"
)

// Imaptest returns the directory of Dovecot's imaptest (its binary
// "imaptest" and its compliance scripts in "tests/"): $IMAPTEST, else
// ../shared/tools/imaptest beside the module root, else
// /work/shared/tools/imaptest. It needs Debian's dovecot-core for its
// library (.ci/packages.d/imaptest). Missing, it fails the test under CI
// and skips it elsewhere.
func Imaptest(t testing.TB) string {
	t.Helper()
	var candidates []string
	if d := os.Getenv("IMAPTEST"); d != "" {
		candidates = append(candidates, d)
	}
	candidates = append(candidates, filepath.Join(ModuleRoot(t), "..", "shared", "tools", "imaptest"), "/work/shared/tools/imaptest")
	for _, d := range candidates {
		if isExec(filepath.Join(d, "imaptest")) {
			if _, err := os.Stat("/usr/lib/dovecot/libdovecot.so.0"); err != nil {
				break // the binary is there, its library not
			}
			return d
		}
	}
	if InCI() {
		t.Fatalf("imaptest is required: set $IMAPTEST to its directory (tried %q) and install dovecot-core (.ci/packages.d/imaptest)", candidates)
	}
	t.Skipf("SKIP: imaptest not found (tried %q, and it needs dovecot-core); under CI=true this fails", candidates)
	return ""
}
