package e2e

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// contrib is the path of a file in the repository's contrib/.
func contrib(t *testing.T, name string) string {
	return filepath.Join(mailtest.ModuleRoot(t), "contrib", name)
}

// TestSystemdUnitVerifies checks contrib/mailroom.service with systemd's
// own checker (with the binary path pointed at the test's build, which
// must exist): systemd-analyze verify says nothing, since it reports a
// misspelt key or a bad value on its output without failing; and
// systemd-analyze security rates the sandbox at most 2.0 ("OK").
func TestSystemdUnitVerifies(t *testing.T) {
	t.Parallel()
	analyze := mailtest.NeedTool(t, "systemd-analyze")
	unit, err := os.ReadFile(contrib(t, "mailroom.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify\n", "ProtectSystem=strict\n", "ReadWritePaths=/var/lib/mailroom ",
		"NoNewPrivileges=yes\n", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", "PrivateTmp=yes\n", "User=mailroom\n"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("contrib/mailroom.service lacks %q", want)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "mailroom.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/mailroom"), []byte(mailtest.Binary(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=true", path).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for mailroom\.service: (\d+\.\d)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.0 {
		t.Errorf("systemd-analyze security rates the unit %.1f, want at most 2.0:\n%s", level, out)
	}
}

// TestSystemdSnippets applies contrib's sysusers.d and tmpfiles.d
// snippets to an empty root, as systemd does at boot (with group postfix
// there, as the postfix package makes it): user mailroom with no login
// shell and data_dir as home; data_dir 0700 and /run/mailroom its own;
// Postfix's socket directory setgid, group postfix, closed to others.
func TestSystemdSnippets(t *testing.T) {
	t.Parallel()
	sysusers := mailtest.NeedTool(t, "systemd-sysusers")
	tmpfiles := mailtest.NeedTool(t, "systemd-tmpfiles")
	needRoot(t, "systemd-tmpfiles chowning to other users")
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "etc", "group"), "postfix:x:105:\n")
	if out, err := exec.Command(sysusers, "--root="+root, contrib(t, "sysusers.d/mailroom.conf")).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	m := regexp.MustCompile(`(?m)^mailroom:x:(\d+):(\d+):[^:]*:/var/lib/mailroom:(/usr/sbin/nologin|/sbin/nologin)$`).FindSubmatch(passwd)
	if m == nil {
		t.Fatalf("no system user mailroom with home /var/lib/mailroom and no shell in:\n%s", passwd)
	}
	uid, _ := strconv.Atoi(string(m[1]))
	gid, _ := strconv.Atoi(string(m[2]))
	if uid == 0 || uid >= 1000 {
		t.Errorf("mailroom's uid %d is not a system uid", uid)
	}
	out, err := exec.Command(tmpfiles, "--root="+root, "--create",
		contrib(t, "tmpfiles.d/mailroom.conf"), contrib(t, "tmpfiles.d/mailroom-postfix.conf")).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Fatalf("systemd-tmpfiles --create: %v\n%s", err, out)
	}
	for _, c := range []struct {
		path     string
		mode     os.FileMode
		uid, gid int
	}{
		{"/var/lib/mailroom", 0o700 | os.ModeDir, uid, gid},
		{"/run/mailroom", 0o755 | os.ModeDir, uid, gid},
		{"/var/spool/postfix/mailroom", 0o750 | os.ModeDir | os.ModeSetgid, uid, 105},
	} {
		fi, err := os.Stat(filepath.Join(root, c.path))
		if err != nil {
			t.Errorf("%s: %v", c.path, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode() != c.mode || int(st.Uid) != c.uid || int(st.Gid) != c.gid {
			t.Errorf("%s: mode %v, owner %d:%d; want %v, %d:%d", c.path, fi.Mode(), st.Uid, st.Gid, c.mode, c.uid, c.gid)
		}
	}
}

// TestServeNotifiesSystemd runs serve as systemd would with Type=notify:
// $NOTIFY_SOCKET names a datagram socket of the test's. READY=1 comes
// once the listeners accept (and SIGHUP is handled: a reload at once
// must not kill it); a SIGHUP gives RELOADING=1 with a monotonic time
// stamp, then READY=1; SIGTERM gives STOPPING=1 and a clean exit.
func TestServeNotifiesSystemd(t *testing.T) {
	t.Parallel()
	sd := startNotified(t)
	cmd, data := sd.cmd, sd.data
	next := func(want string) string {
		t.Helper()
		msg, err := sd.read(30 * time.Second)
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		if !strings.HasPrefix(msg, want+"\n") && msg != want {
			t.Fatalf("notification %q, want %s", msg, want)
		}
		return msg
	}

	ready := next("READY=1")
	if !strings.Contains(ready, "\nSTATUS=serving example.org") {
		t.Errorf("READY without a status: %q", ready)
	}
	c, err := net.Dial("unix", filepath.Join(data, "lmtp.sock"))
	if err != nil {
		t.Fatalf("LMTP does not accept after READY=1: %v", err)
	}
	greeting, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if !strings.HasPrefix(greeting, "220 ") {
		t.Errorf("LMTP greeting after READY=1: %q", greeting)
	}

	// systemctl reload right after the start.
	cmd.Process.Signal(syscall.SIGHUP)
	reloading := next("RELOADING=1")
	if !regexp.MustCompile(`\nMONOTONIC_USEC=\d+`).MatchString(reloading) {
		t.Errorf("RELOADING without MONOTONIC_USEC: %q", reloading)
	}
	next("READY=1")

	cmd.Process.Signal(syscall.SIGTERM)
	next("STOPPING=1")
	select {
	case <-sd.exited:
		if sd.waitErr != nil {
			t.Errorf("serve exited with %v after SIGTERM, want 0", sd.waitErr)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not stop within 40s of SIGTERM")
	}
}

// TestServeFeedsWatchdog: with $WATCHDOG_USEC (WatchdogSec= in the unit)
// serve sends WATCHDOG=1 at half the interval; for another process's
// $WATCHDOG_PID it sends none (TestServeNotifiesSystemd: none without).
func TestServeFeedsWatchdog(t *testing.T) {
	t.Parallel()
	sd := startNotified(t, "WATCHDOG_USEC=400000")
	var ready bool
	pings := 0
	for !ready || pings < 3 {
		msg, err := sd.read(30 * time.Second)
		if err != nil {
			t.Fatalf("after %d WATCHDOG=1 (ready %v): %v", pings, ready, err)
		}
		switch {
		case msg == "WATCHDOG=1":
			pings++
		case strings.HasPrefix(msg, "READY=1\n"):
			ready = true
		default:
			t.Fatalf("notification %q, want READY=1 or WATCHDOG=1", msg)
		}
	}

	other := startNotified(t, "WATCHDOG_USEC=400000", "WATCHDOG_PID=1")
	if msg, err := other.read(30 * time.Second); err != nil || !strings.HasPrefix(msg, "READY=1\n") {
		t.Fatalf("first notification %q, %v; want READY=1", msg, err)
	}
	// Ten intervals: a ping would have come five times over.
	if msg, err := other.read(4 * time.Second); err == nil {
		t.Fatalf("serve watched as another process (WATCHDOG_PID=1) sent %q", msg)
	}
}

// notified is a serve started as systemd starts a Type=notify service.
type notified struct {
	cmd  *exec.Cmd
	data string
	nl   *net.UnixConn
	// exited is closed once serve has exited, with its result in waitErr.
	exited  chan struct{}
	waitErr error
}

// startNotified starts serve (LMTP on a socket in its data_dir) with
// $NOTIFY_SOCKET naming a datagram socket of the test's, and env added.
func startNotified(t *testing.T, env ...string) *notified {
	t.Helper()
	dir := mailtest.ShortTempDir(t)
	notify := filepath.Join(dir, "notify")
	nl, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nl.Close() })
	cfg, data := mailtest.WriteConfig(t, `hostname = "mx.test"
data_dir = "%DATA%"
domains = ["example.org"]
[lmtp]
listen = ["unix:%DATA%/lmtp.sock"]
`)
	cmd := exec.Command(mailtest.Binary(t), "serve", "-config", cfg)
	cmd.Env = append(append(os.Environ(), "NOTIFY_SOCKET="+notify), env...)
	var log mailtest.LockedBuffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sd := &notified{cmd: cmd, data: data, nl: nl, exited: make(chan struct{})}
	go func() { sd.waitErr = cmd.Wait(); close(sd.exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-sd.exited
		if t.Failed() {
			t.Logf("mailroom serve log:\n%s", log.String())
		}
	})
	return sd
}

// read returns the next notification, waiting at most timeout.
func (sd *notified) read(timeout time.Duration) (string, error) {
	sd.nl.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	n, err := sd.nl.Read(buf)
	return string(buf[:n]), err
}
