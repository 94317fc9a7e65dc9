package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"mailroom/internal/mailtest"
)

// procStatus returns the fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return out
}

func owner(t *testing.T, path string) int {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

// TestServeDropsPrivileges starts `mailroom serve` as root with [server]
// user = "mailroom", as an init script without systemd would: it binds
// SMTP on a port below 1024 and its unix sockets, and then runs as
// mailroom for good (every uid and gid of every thread, no capabilities
// left); what it writes in data_dir (database, mail) is mailroom's; a
// data_dir that is someone else's is refused with the command that fixes
// it.
func TestServeDropsPrivileges(t *testing.T) {
	t.Parallel()
	uid, gid := mailroomUser(t)
	port := privilegedPort(t)
	cfgText := fmt.Sprintf(`hostname = "mx.test"
data_dir = "%%DATA%%"
domains = ["example.org"]
[server]
user = "mailroom"
[smtp]
listen = ["127.0.0.1:%d"]
[lmtp]
listen = ["unix:%%DATA%%/lmtp.sock"]
`, port)

	// data_dir is root's: refused before anything is bound or written.
	cfg, dir := mailtest.WriteConfig(t, cfgText)
	out, code := mailtest.RunBinary(t, cfg, "", "serve")
	if code != 78 || !strings.Contains(out, "chown -R mailroom: "+dir) {
		t.Fatalf("serve with a data_dir owned by root: exit %d, want 78 naming the fix\n%s", code, out)
	}

	chownTree(t, dir, uid, gid)
	s := mailtest.StartServerConfig(t, cfg, dir)
	if !strings.Contains(s.Log(), "msg=\"dropped privileges\" user=mailroom") {
		t.Errorf("serve did not log that it dropped privileges:\n%s", s.Log())
	}
	st := procStatus(t, s.PID())
	ids := func(n int) string { return strings.TrimSpace(strings.Repeat(strconv.Itoa(n)+" ", 4)) }
	if st["Uid"] != ids(uid) || st["Gid"] != ids(gid) {
		t.Errorf("serve runs with Uid %q Gid %q, want %q and %q (real, effective, saved, fs)", st["Uid"], st["Gid"], ids(uid), ids(gid))
	}
	if st["Groups"] != strconv.Itoa(gid) {
		t.Errorf("serve's supplementary groups %q, want only %d (mailroom's)", st["Groups"], gid)
	}
	if st["CapEff"] != "0000000000000000" || st["CapPrm"] != "0000000000000000" {
		t.Errorf("serve keeps capabilities: CapEff %s CapPrm %s", st["CapEff"], st["CapPrm"])
	}
	// Every thread, not only the main one.
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", s.PID()))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", s.PID(), task.Name()))
		if m := regexp.MustCompile(`(?m)^Uid:\s+(.*)$`).FindSubmatch(b); m == nil || strings.Join(strings.Fields(string(m[1])), " ") != ids(uid) {
			t.Errorf("thread %s runs with Uid %q", task.Name(), m)
		}
	}

	// The privileged port answers, and mail lands as mailroom's.
	d := mailtest.Dial(t, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	d.Send("QUIT")
	d.Expect("221 ")
	if out, code := s.Run(t, "secret\n", "user", "add", "alice@example.org"); code != 0 {
		t.Fatalf("user add: exit %d\n%s", code, out)
	}
	sock := s.Addr(t, "lmtp", true)
	lmtpSwaks(t, sock, true, crlf("Subject: as mailroom\n\nx\n"), "carol@example.net", "alice@example.org")
	msgs := maildirNew(t, mailRoot(s), "example.org/alice")
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want 1", len(msgs))
	}
	for _, p := range []string{
		filepath.Join(dir, "mailroom.db"),
		filepath.Join(dir, "control.sock"),
		sock,
		filepath.Join(mailRoot(s), "example.org", "alice", "Maildir", "new", msgs[0].Name),
	} {
		if o := owner(t, p); o != uid {
			t.Errorf("%s belongs to uid %d, want %d (mailroom)", p, o, uid)
		}
	}
	s.Stop(t)
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("the LMTP socket is left after a clean stop (%v): mailroom could not remove it", err)
	}
}
