package mailtest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// NeedRoot fails the test under CI (which runs as root) and skips it,
// loudly, elsewhere, unless the process is root.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if InCI() {
		t.Fatalf("this test needs root (%s), which CI has", why)
	}
	t.Skipf("SKIP: %s needs root (CI runs as root)", why)
}

// NeedPython returns a Python 3 interpreter that can import every module
// listed (Debian's /usr/bin/python3 first: python3-dkim and friends are
// installed for it, not for a python3 earlier in PATH). Missing modules
// fail the test under CI and skip it elsewhere.
func NeedPython(t testing.TB, modules ...string) string {
	t.Helper()
	candidates := []string{"/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	imp := "import " + strings.Join(modules, ", ")
	var last string
	for _, py := range candidates {
		out, err := exec.Command(py, "-c", imp).CombinedOutput()
		if err == nil {
			return py
		}
		last = strings.TrimSpace(string(out))
	}
	if InCI() {
		t.Fatalf("python3 with %s is required (.ci/run installs it): %s", strings.Join(modules, ", "), last)
	}
	t.Skipf("SKIP: no python3 with %s (%s); under CI=true this fails", strings.Join(modules, ", "), last)
	return ""
}
