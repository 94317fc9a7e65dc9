package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// TestBackupUnderLoad takes `mailroom backup` from a running server while
// four LMTP clients deliver and an IMAP client flags messages and moves
// them to another folder, restores it into a new data_dir, and finds in
// the restored server every account (with its password) and every message
// acknowledged before the backup began, each once, in agreement with the
// index (SELECT counts what the folder holds).
func TestBackupUnderLoad(t *testing.T) {
	users := []string{"alice@example.org", "bob@example.org", "carol@example.org"}
	s := startIMAPServer(t, "", users...)

	var mu sync.Mutex
	acked := map[string]time.Time{} // Message-ID -> its 250
	var failures []error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("<load-%d-%d@client.test>", w, i)
				msg := fmt.Sprintf("Message-ID: %s\nSubject: load %d %d\n\n%s\n", id, w, i, strings.Repeat("body ", 50))
				at, err := lmtpSend(s.LMTP, "sender@remote.example", users[(w+i)%len(users)], msg)
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					acked[id] = at
				}
				mu.Unlock()
			}
		})
	}
	mailtest.Eventually(t, 30*time.Second, "40 deliveries", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 40
	})

	ic := dialIMAP(t, s.IMAP, nil)
	ic.login(users[0])
	ic.ok("SELECT INBOX")

	dir := filepath.Join(mailtest.ShortTempDir(t), "backup")
	start := time.Now()
	type result struct {
		out  string
		code int
	}
	done := make(chan result, 1)
	go func() {
		out, err := exec.Command(mailtest.Binary(t), "backup", "-config", s.Config, dir).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			code = -1
		}
		done <- result{string(out), code}
	}()
	// The mail client at work while the backup runs: flags (renames
	// within the folder, new/ to cur/) and moves to another folder.
	var res result
	moves := 0
work:
	for {
		select {
		case res = <-done:
			break work
		default:
		}
		ic.ok(`UID STORE 1:* +FLAGS.SILENT (\Seen)`)
		ic.ok("NOOP")
		if _, st := ic.cmd("MOVE 1:2 Archive"); strings.HasPrefix(st, "OK") {
			moves++
		}
	}
	close(stop)
	wg.Wait()
	if res.code != 0 {
		t.Fatalf("mailroom backup under load: exit %d\n%s", res.code, res.out)
	}
	if len(failures) > 0 {
		t.Fatalf("%d deliveries failed, the first: %v", len(failures), failures[0])
	}
	var before []string
	for id, at := range acked {
		if at.Before(start) {
			before = append(before, id)
		}
	}
	t.Logf("backup: %s; %d messages acknowledged before it began, %d in all; %d IMAP moves during it", strings.TrimSpace(res.out), len(before), len(acked), moves)
	s.Stop(t)

	if out, code := mailtest.RunBinary(t, s.Config, "", "backup", "-verify", dir); code != 0 {
		t.Fatalf("backup -verify: exit %d\n%s", code, out)
	}

	// Restore into a new installation and start it.
	cert, key := mailtest.TestCert(t, mailtest.ShortTempDir(t))
	cfgPath, newDir := mailtest.WriteConfig(t, strings.NewReplacer("%CERT%", cert, "%KEY%", key, "%EXTRA%", "").Replace(imapConfigTemplate))
	if out, code := mailtest.RunBinary(t, cfgPath, "", "restore", dir); code != 0 {
		t.Fatalf("mailroom restore: exit %d\n%s", code, out)
	}
	r := imapServerOf(t, mailtest.StartServerConfig(t, cfgPath, newDir), cert)
	if out, _ := r.Run(t, "", "user", "list"); strings.Count(out, "@example.org") != len(users) {
		t.Errorf("accounts after restore:\n%s", out)
	}

	// Every message acknowledged before the backup is on disk once.
	idRE := regexp.MustCompile(`(?m)^Message-ID: (<load-[^>]+>)`)
	found := map[string]int{}
	for _, u := range users {
		home := "example.org/" + strings.TrimSuffix(u, "@example.org")
		filepath.WalkDir(filepath.Join(r.DataDir, "mail", home), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && (filepath.Base(filepath.Dir(p)) == "new" || filepath.Base(filepath.Dir(p)) == "cur") {
				b, _ := os.ReadFile(p)
				if m := idRE.FindSubmatch(b); m != nil {
					found[string(m[1])]++
				}
			}
			return nil
		})
	}
	lost, dup := 0, 0
	for _, id := range before {
		if found[id] == 0 {
			lost++
		}
	}
	for id, n := range found {
		if n > 1 {
			dup++
			t.Errorf("%s is in the restored mail %d times", id, n)
		}
	}
	if lost > 0 {
		t.Errorf("%d of the %d messages acknowledged before the backup are missing after the restore", lost, len(before))
	}
	t.Logf("restored %d messages (%d lost, %d duplicated)", len(found), lost, dup)

	// The index agrees with the files: each user logs in with the old
	// password and each folder shows what it holds.
	existsRE := regexp.MustCompile(`^\* (\d+) EXISTS`)
	for _, u := range users {
		c := dialIMAP(t, r.IMAP, nil)
		c.login(u)
		home := "example.org/" + strings.TrimSuffix(u, "@example.org")
		for folder, dirName := range map[string]string{"INBOX": "", "Archive": ".Archive"} {
			exists := -1
			for _, l := range c.ok("SELECT " + folder) {
				if m := existsRE.FindStringSubmatch(l); m != nil {
					exists, _ = strconv.Atoi(m[1])
				}
			}
			md := filepath.Join(r.maildir(home), dirName)
			files := countFiles(filepath.Join(md, "new")) + countFiles(filepath.Join(md, "cur"))
			if exists != files {
				t.Errorf("%s %s: SELECT says %d EXISTS, the folder holds %d files", u, folder, exists, files)
			}
		}
	}
}

func countFiles(dir string) int {
	ents, _ := os.ReadDir(dir)
	return len(ents)
}
