package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"mailroom/internal/mailtest"
)

// guideRecipe returns the shell block of docs/admin.md that begins with
// "# recipe: NAME".
func guideRecipe(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(mailtest.ModuleRoot(t), "docs", "admin.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "```sh\n# recipe: "+name+" ")
	if !ok {
		t.Fatalf("docs/admin.md has no recipe %q", name)
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("recipe %q does not end", name)
	}
	_, block, _ = strings.Cut(block, "\n") // the rest of the recipe's comment line
	return block
}

// runRecipe runs a recipe with bash -e, with `mailroom` on the PATH as
// the binary under test and MAILROOM_CONFIG naming the server's file.
func runRecipe(t *testing.T, script, config string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(mailtest.Binary(t), filepath.Join(bin, "mailroom")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mailtest.NeedTool(t, "bash"), "-e", "-o", "pipefail", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "MAILROOM_CONFIG="+config)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("recipe failed: %v\n%s\n--- the recipe as run:\n%s", err, out, script)
	}
	return string(out)
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// TestAdminGuideBackup runs the administrator's guide's backup recipes as
// written, with only the places changed (a local directory for the
// off-site host, bash -c for ssh): a nightly backup of a running server
// copied off-site with rsync and checked there, a second night that
// stores only the new mail (the first night's files are hard links), and
// a trial restore of the off-site copy that finds every account.
func TestAdminGuideBackup(t *testing.T) {
	mailtest.NeedTool(t, "rsync")
	mailtest.NeedTool(t, "sha256sum")
	s := startServer(t, serverConfig, "alice@example.org", "bob@example.org")
	deliverTo := func(n int) {
		for i := range n {
			msg := fmt.Sprintf("Subject: night %d\n\nbody %d\n", i, i)
			if out, code := s.Run(t, msg, "deliver", "-f", "x@remote.example", "alice@example.org", "bob@example.org"); code != 0 {
				t.Fatalf("deliver: %d %s", code, out)
			}
		}
	}
	deliverTo(3)

	local := filepath.Join(mailtest.ShortTempDir(t), "backups")
	if err := os.Mkdir(local, 0o700); err != nil {
		t.Fatal(err)
	}
	remote := mailtest.ShortTempDir(t)
	if err := os.MkdirAll(filepath.Join(remote, "srv", "mailroom"), 0o700); err != nil {
		t.Fatal(err)
	}
	offsite := guideRecipe(t, "offsite-backup")
	places := strings.NewReplacer(
		"backup.example.net:/srv/mailroom/", remote+"/srv/mailroom/",
		"ssh backup.example.net", "bash -c",
		"/srv/mailroom", remote+"/srv/mailroom",
		"/var/backups/mailroom", local,
	)
	night := func(day string) {
		script := places.Replace(offsite)
		script = strings.Replace(script, "day=$(date +%Y-%m-%d)", "day="+day, 1)
		out := runRecipe(t, script, s.Config)
		t.Logf("night %s:\n%s", day, out)
	}
	night("2026-12-01")
	first := filepath.Join(remote, "srv", "mailroom", "2026-12-01")
	if target, err := os.Readlink(filepath.Join(remote, "srv", "mailroom", "latest")); err != nil || target != "2026-12-01" {
		t.Fatalf("latest after the first night: %q %v", target, err)
	}
	if left, _ := os.ReadDir(local); len(left) != 0 {
		t.Errorf("the local backup is left behind: %v", left)
	}
	aliceNew := func(dir string) []string {
		files, _ := filepath.Glob(filepath.Join(dir, "mail", "example.org", "alice", "Maildir", "new", "*"))
		return files
	}
	if n := len(aliceNew(first)); n != 3 {
		t.Fatalf("first night's copy holds %d of alice's 3 messages", n)
	}

	deliverTo(1)
	night("2026-12-02")
	second := filepath.Join(remote, "srv", "mailroom", "2026-12-02")
	files := aliceNew(second)
	if len(files) != 4 {
		t.Fatalf("second night's copy holds %d of alice's 4 messages", len(files))
	}
	linked := 0
	for _, f := range aliceNew(first) {
		if inode(t, f) == inode(t, filepath.Join(second, strings.TrimPrefix(f, first))) {
			linked++
		}
	}
	if linked != 3 {
		t.Errorf("%d of the 3 messages of the first night are hard links in the second's copy, want all: rsync --link-dest stores only new mail", linked)
	}

	trial := strings.ReplaceAll(guideRecipe(t, "trial-restore"), "/srv/mailroom", remote+"/srv/mailroom")
	out := runRecipe(t, trial, s.Config)
	for _, u := range []string{"alice@example.org", "bob@example.org"} {
		if !strings.Contains(out, u) {
			t.Errorf("the trial restore lists no %s:\n%s", u, out)
		}
	}
}
