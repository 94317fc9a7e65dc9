package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mailroom/internal/mailtest"
)

// TestAlertRules: contrib/prometheus/mailroom.rules.yml passes promtool's
// check, and promtool's rule unit tests (testdata/prometheus/rules_test.yml)
// see each alert fire on the series that should raise it, with its
// labels and text, and none on a healthy server. TestMetrics checks that
// the rules name metrics and labels a real scrape has.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool := mailtest.NeedTool(t, "promtool")
	rules := contrib(t, "prometheus/mailroom.rules.yml")
	if out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	tmpl, err := os.ReadFile(filepath.Join("testdata", "prometheus", "rules_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := filepath.Join(t.TempDir(), "rules_test.yml")
	if err := os.WriteFile(tests, []byte(strings.ReplaceAll(string(tmpl), "%RULES%", rules)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "test", "rules", tests).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
