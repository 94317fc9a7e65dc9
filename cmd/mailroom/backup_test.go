package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
	"mailroom/mailbox"
	"mailroom/mailbox/maildir"
)

// TestBackupRestore: a backup taken without a server restores into an
// empty data_dir with every account (passwords too), message and queued
// message; verify notices damage; restore refuses to overwrite unless
// -force, which keeps the old data aside.
func TestBackupRestore(t *testing.T) {
	cfgPath, dataDir, _ := populated(t)
	// A message's mtime is its INTERNALDATE: backup and restore keep it.
	old := time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	inbox, _ := filepath.Glob(filepath.Join(dataDir, "mail/example.org/alice/Maildir/new/*"))
	if len(inbox) == 0 {
		t.Fatal("alice has no message in new/")
	}
	dated := inbox[0]
	datedRel, _ := filepath.Rel(dataDir, dated)
	if err := os.Chtimes(dated, time.Time{}, old); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mailtest.ShortTempDir(t), "b1")
	out, code := cli(t, "", "backup", "-config", cfgPath, dir)
	if code != 0 || !strings.Contains(out, "3 accounts, 10 messages, 1 queued") {
		t.Fatalf("backup: %d %s", code, out)
	}
	if out, code := cli(t, "", "backup", "-verify", dir); code != 0 || !strings.Contains(out, "sound: 3 accounts, 10 messages, 1 queued") {
		t.Fatalf("backup -verify: %d %s", code, out)
	}

	// Into a new installation.
	other := writeConfig(t)
	otherData := filepath.Join(filepath.Dir(other), "data")
	if out, code := cli(t, "", "restore", "-config", other, dir); code != 0 || !strings.Contains(out, "3 accounts, 10 messages, 1 queued") || !strings.Contains(out, "under a new UIDVALIDITY") {
		t.Fatalf("restore: %d %s", code, out)
	}
	for _, p := range []string{filepath.Join(dir, datedRel), filepath.Join(otherData, datedRel)} {
		if st, err := os.Stat(p); err != nil || !st.ModTime().Equal(old) {
			t.Errorf("%s: mtime not kept (the message's INTERNALDATE): %v", p, err)
		}
	}
	// Under a new UIDVALIDITY, with the same UIDs; -keep-uids keeps it.
	was, now := inboxOf(t, cfgPath, "example.org/alice"), inboxOf(t, other, "example.org/alice")
	if now.UIDValidity <= was.UIDValidity || !slices.Equal(uidList(now), uidList(was)) {
		t.Errorf("restored INBOX: V%d %v; before V%d %v: want a new UIDVALIDITY and the same UIDs", now.UIDValidity, uidList(now), was.UIDValidity, uidList(was))
	}
	kept := writeConfig(t)
	if out, code := cli(t, "", "restore", "-keep-uids", "-config", kept, dir); code != 0 || strings.Contains(out, "new UIDVALIDITY") {
		t.Fatalf("restore -keep-uids: %d %s", code, out)
	}
	if k := inboxOf(t, kept, "example.org/alice"); k.UIDValidity != was.UIDValidity || !slices.Equal(uidList(k), uidList(was)) {
		t.Errorf("restore -keep-uids: V%d %v, want V%d %v", k.UIDValidity, uidList(k), was.UIDValidity, uidList(was))
	}
	list, _ := cli(t, "", "user", "list", "-config", other)
	if strings.Count(list, "@example.org") != 3 {
		t.Errorf("user list after restore: %q", list)
	}
	if q, _ := cli(t, "", "queue", "list", "-config", other); !strings.Contains(q, "friend@remote.example") {
		t.Errorf("queue after restore: %q", q)
	}
	for _, home := range []string{"example.org/alice", "example.org/bob"} {
		if n := len(mailtest.Messages(t, filepath.Join(otherData, "mail"), home)); n != 5 {
			t.Errorf("%s: %d messages after restore, want 5", home, n)
		}
	}
	a := testApp(t, other)
	if _, err := a.accounts.Authenticate("bob@example.org", "pw-bob"); err != nil {
		t.Errorf("bob's password after restore: %v", err)
	}
	a.Close()

	// Over existing data: refused, or moved aside with -force.
	if out, code := cli(t, "", "restore", "-config", cfgPath, dir); code != exitDataErr || !strings.Contains(out, "-force") {
		t.Errorf("restore over data: %d %s", code, out)
	}
	if out, code := cli(t, "", "restore", "-force", "-config", cfgPath, dir); code != 0 || !strings.Contains(out, "aside") {
		t.Errorf("restore -force: %d %s", code, out)
	}
	if aside, _ := filepath.Glob(filepath.Join(dataDir, "mailroom.db.before-restore-*")); len(aside) != 1 {
		t.Errorf("the old database was not kept aside: %v", aside)
	}

	// A damaged backup is refused.
	msgs, _ := filepath.Glob(filepath.Join(dir, "mail/example.org/alice/Maildir/new/*"))
	os.WriteFile(msgs[0], []byte("tampered"), 0o600)
	if out, code := cli(t, "", "backup", "-verify", dir); code != exitDataErr || !strings.Contains(out, "contents differ") {
		t.Errorf("verify of a damaged backup: %d %s", code, out)
	}
	if out, code := cli(t, "", "restore", "-config", writeConfig(t), dir); code != exitDataErr {
		t.Errorf("restore of a damaged backup: %d %s", code, out)
	}
}

// TestRepairFromBackup: after the database is lost, repair -from takes
// the accounts (with their passwords) from a backup.
func TestRepairFromBackup(t *testing.T) {
	cfgPath, dataDir, _ := populated(t)
	dir := filepath.Join(mailtest.ShortTempDir(t), "b")
	if out, code := cli(t, "", "backup", "-config", cfgPath, dir); code != 0 {
		t.Fatalf("backup: %d %s", code, out)
	}
	os.WriteFile(filepath.Join(dataDir, "mailroom.db"), nil, 0o600)
	out, code := cli(t, "", "check", "-repair", "-from", dir, "-config", cfgPath)
	if code != 0 || strings.Count(out, "restored from") != 3 || strings.Contains(out, "without a password") {
		t.Fatalf("check -repair -from: %d\n%s", code, out)
	}
	a := testApp(t, cfgPath)
	defer a.Close()
	if _, err := a.accounts.Authenticate("carol@example.org", "pw-carol"); err != nil {
		t.Errorf("carol's password after repair from the backup: %v", err)
	}
}

// inboxOf is the INBOX of home as the index of the installation of
// cfgPath has it.
func inboxOf(t *testing.T, cfgPath, home string) *mailbox.Snapshot {
	t.Helper()
	sess, done := openFolders(t, cfgPath, home)
	defer done()
	snap, err := sess.Sync(t.Context(), "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// openFolders opens the folders of home in the installation of cfgPath,
// as an IMAP session would; done closes them and the installation.
func openFolders(t *testing.T, cfgPath, home string) (sess mailbox.Folders, done func()) {
	t.Helper()
	a := testApp(t, cfgPath)
	ix, err := maildir.NewIndex(a.db, a.maildir, maildir.IndexOptions{})
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	sess, err = ix.Open(t.Context(), home)
	if err != nil {
		ix.Close()
		a.Close()
		t.Fatal(err)
	}
	return sess, func() { sess.Close(); ix.Close(); a.Close() }
}

func uidList(s *mailbox.Snapshot) []uint32 {
	var out []uint32
	for _, m := range s.Messages {
		out = append(out, m.UID)
	}
	return out
}
