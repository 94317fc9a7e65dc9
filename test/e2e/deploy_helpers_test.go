package e2e

import (
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"mailroom/internal/mailtest"
)

// needRoot fails the test under CI, and skips it elsewhere, unless it runs
// as root.
func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if mailtest.InCI() {
		t.Fatalf("%s needs root", why)
	}
	t.Skipf("SKIP: %s needs root", why)
}

var sysusersOnce sync.Mutex

// mailroomUser returns the uid and gid of the system user mailroom,
// creating it first, if it is missing, with contrib/sysusers.d/mailroom.conf
// as a package's installation would (systemd-sysusers).
func mailroomUser(t *testing.T) (uid, gid int) {
	t.Helper()
	needRoot(t, "creating and becoming user mailroom")
	sysusersOnce.Lock()
	defer sysusersOnce.Unlock()
	u, err := user.Lookup("mailroom")
	if err != nil {
		bin := mailtest.NeedTool(t, "systemd-sysusers")
		conf := filepath.Join(mailtest.ModuleRoot(t), "contrib", "sysusers.d", "mailroom.conf")
		if out, err := exec.Command(bin, conf).CombinedOutput(); err != nil {
			t.Fatalf("systemd-sysusers %s: %v\n%s", conf, err, out)
		}
		if u, err = user.Lookup("mailroom"); err != nil {
			t.Fatalf("systemd-sysusers ran, but: %v", err)
		}
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// privilegedPort returns a port below 1024 on 127.0.0.1 that was free a
// moment ago (only root may bind it).
func privilegedPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		p := 600 + rand.IntN(1024-600)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no free port below 1024")
	return 0
}

// chownTree gives dir and everything in it to uid:gid.
func chownTree(t *testing.T, dir string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}
