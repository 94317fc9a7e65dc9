package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"mailroom/internal/mailtest"
)

// TestHelp: `help CMD` and `CMD -h` print the same usage of that command
// on stdout and exit 0, for every command, with its flags and actions.
func TestHelp(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			viaHelp, code := cli(t, "", "help", c.name)
			if code != 0 || !strings.HasPrefix(viaHelp, "usage: mailroom "+c.name) {
				t.Fatalf("help %s: exit %d\n%s", c.name, code, viaHelp)
			}
			for _, a := range c.actions {
				if !strings.Contains(viaHelp, "  "+a.usage+" ") {
					t.Errorf("help %s does not explain %q:\n%s", c.name, a.usage, viaHelp)
				}
			}
			if c.flagsOf != nil && !strings.Contains(viaHelp, "-config FILE\n") {
				t.Errorf("help %s does not list -config:\n%s", c.name, viaHelp)
			}
			if c.flagsOf == nil {
				return
			}
			for _, h := range []string{"-h", "-help", "--help"} {
				viaFlag, code := cli(t, "", c.name, h)
				if code != 0 || viaFlag != viaHelp {
					t.Errorf("%s %s: exit %d, and not the same as help %s:\n%s", c.name, h, code, c.name, viaFlag)
				}
			}
		})
	}
	if out, code := cli(t, "", "serve", "-h"); code != 0 || !strings.Contains(out, "-dev\n") || !strings.Contains(out, "SIGHUP") {
		t.Errorf("serve -h: %d %s", code, out)
	}
	if out, code := cli(t, "", "help", "config"); code != 0 || !strings.Contains(out, "\n[limits]\n") || !regexp.MustCompile(`max_recipients +an integer, default 100`).MatchString(out) {
		t.Errorf("help config: %d %s", code, out)
	}
	if out, code := cli(t, "", "help", "config", "limits.idle_timeout"); code != 0 || !strings.HasPrefix(out, `limits.idle_timeout: a duration such as "5m" or "90s", default "5m"`) ||
		!strings.Contains(out, "idle_timeout bounds every read") {
		t.Errorf("help config limits.idle_timeout: %d %s", code, out)
	}
	if out, code := cli(t, "", "help", "config", "limits"); code != 0 || !strings.Contains(out, "\n  limits.max_recipients\n") {
		t.Errorf("help config limits: %d %s", code, out)
	}
	if out, code := cli(t, "", "help", "config", "limits.nosuch"); code != exitUsage || !strings.Contains(out, "no key") {
		t.Errorf("help config limits.nosuch: %d %s", code, out)
	}
	if out, code := cli(t, "", "help", "nosuch"); code != exitUsage || !strings.Contains(out, "no help for") {
		t.Errorf("help nosuch: %d %s", code, out)
	}
	if out, code := cli(t, "", "user", "-x"); code != exitUsage || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "mailroom help user") {
		t.Errorf("a bad flag: %d %q, want one line pointing at help", code, out)
	}
}

// TestConfigBeforeCommand: -config may come before the command, for
// commands with and without actions.
func TestConfigBeforeCommand(t *testing.T) {
	cfg := writeConfig(t)
	if out, code := cli(t, "pw\n", "-config", cfg, "user", "add", "alice@example.org"); code != 0 {
		t.Fatalf("-config before user add: %d %s", code, out)
	}
	if out, code := cli(t, "", "-config="+cfg, "user", "list"); code != 0 || !strings.Contains(out, "alice@example.org") {
		t.Errorf("-config= before user list: %d %s", code, out)
	}
	if out, code := cli(t, "", "-config", cfg, "check"); code != 0 || !strings.Contains(out, cfg+": ok") {
		t.Errorf("-config before check: %d %s", code, out)
	}
	if out, code := cli(t, "", "-config", cfg, "dkim", "check", "elsewhere.example"); code != exitUsage || !strings.Contains(out, "not one of the domains in "+cfg) {
		t.Errorf("-config before dkim check: %d %s", code, out)
	}
	if out, code := cli(t, "", "-bogus", "check"); code != exitUsage || !strings.Contains(out, "before the command") {
		t.Errorf("an unknown flag before the command: %d %s", code, out)
	}
}

// TestVersion: version and -version print the module version, and the
// VCS revision when the binary was built from a checkout with stamping
// (go build's default; this machine sets GOFLAGS=-buildvcs=false, so the
// test builds with -buildvcs=true itself).
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"-version"}, {"--version"}} {
		if out, code := cli(t, "", args...); code != 0 || !regexp.MustCompile(`^mailroom \S+.* go?1\.\d+`).MatchString(out) && !strings.HasPrefix(out, "mailroom ") {
			t.Errorf("%v: %d %q", args, code, out)
		}
	}
	git, err := exec.LookPath("git")
	root := mailtest.ModuleRoot(t)
	// go stamps a clone, whose .git is a directory, and not a worktree
	// (whose .git is a file) or an unpacked archive; CI runs in a clone.
	if st, serr := os.Stat(root + "/.git"); err != nil || serr != nil || !st.IsDir() {
		t.Skip("SKIP: not a git clone (a worktree or an archive); go does not stamp the revision")
	}
	head, _ := exec.Command(git, "-C", root, "rev-parse", "HEAD").Output()
	bin := t.TempDir() + "/mailroom"
	build := exec.Command("go", "build", "-o", bin, "./cmd/mailroom")
	build.Dir = root
	// In the environment: the flag alone does not override a GOFLAGS set
	// with go env -w.
	build.Env = append(os.Environ(), "GOFLAGS=-buildvcs=true")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "rev " + string(head[:12]); !strings.Contains(string(out), want) {
		t.Errorf("version of a stamped build: %q, want %q", out, want)
	}
}
