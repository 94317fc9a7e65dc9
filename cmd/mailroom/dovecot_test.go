package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"mailroom/internal/mailtest"
	"mailroom/mailbox"
)

// folderView is what an IMAP client keeps of a folder: its UIDVALIDITY
// and, by UID, each message's subject and flags.
type folderView struct {
	uidValidity uint32
	byUID       map[uint32]string // "subject flags"
}

// mailroomView reads INBOX of home as mailroom's index has it, after
// expunging the message with the second UID and flagging the third, so
// that the UIDs have a gap and the flags a change.
func mailroomView(t *testing.T, cfgPath, home string) folderView {
	t.Helper()
	sess, done := openFolders(t, cfgPath, home)
	defer done()
	ctx := context.Background()
	snap, err := sess.Sync(ctx, "INBOX")
	if err != nil || len(snap.Messages) < 3 {
		t.Fatalf("INBOX of %s: %v %+v", home, err, snap)
	}
	if _, err := sess.Expunge(ctx, "INBOX", []uint32{snap.Messages[1].UID}); err != nil {
		t.Fatal(err)
	}
	if _, err = sess.SetFlags(ctx, "INBOX", []uint32{snap.Messages[1].UID}, mailbox.FlagsAdd, []string{`\Flagged`}); err != nil {
		t.Fatal(err)
	}
	return readView(t, sess)
}

// readView is INBOX as the session sees it.
func readView(t *testing.T, sess mailbox.Folders) folderView {
	t.Helper()
	ctx := context.Background()
	snap, err := sess.Sync(ctx, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	v := folderView{uidValidity: snap.UIDValidity, byUID: map[uint32]string{}}
	for _, m := range snap.Messages {
		r, _, err := sess.Open(ctx, "INBOX", m.UID)
		if err != nil {
			t.Fatal(err)
		}
		subject := ""
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if s, ok := strings.CutPrefix(strings.TrimRight(sc.Text(), "\r"), "Subject: "); ok {
				subject = s
				break
			}
		}
		r.Close()
		flags := slices.Clone(m.Flags)
		slices.Sort(flags)
		v.byUID[m.UID] = subject + " " + strings.Join(flags, ",")
	}
	return v
}

// dovecotIMAP runs Dovecot's imap(1) preauthenticated as user on the
// Maildirs under mailRoot, with the IMAP commands given (CRLF-ended), and
// returns what it answered; a NO or BAD fails the test.
func dovecotIMAP(t *testing.T, mailRoot, user, commands string) string {
	t.Helper()
	mailtest.NeedTool(t, "doveconf") // dovecot-core
	imapBin := "/usr/lib/dovecot/imap"
	if _, err := os.Stat(imapBin); err != nil {
		t.Fatalf("Dovecot's imap: %v", err)
	}
	dir := t.TempDir()
	conf := fmt.Sprintf("mail_location = maildir:%s/%%d/%%n/Maildir\nbase_dir = %s/run\nstate_dir = %s/state\nlog_path = /dev/stderr\nssl = no\n",
		mailRoot, dir, dir)
	if os.Geteuid() == 0 {
		// Dovecot will not serve mail as root.
		conf += "mail_uid = nobody\nmail_gid = nogroup\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "dovecot.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	local, domain, _ := strings.Cut(user, "@")
	cmd := exec.Command(imapBin, "-c", filepath.Join(dir, "dovecot.conf"))
	cmd.Env = append(os.Environ(), "USER="+user, "HOME="+filepath.Join(mailRoot, domain, local))
	cmd.Stdin = strings.NewReader(commands + "z LOGOUT\r\n")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), " NO ") || strings.Contains(string(out), " BAD ") {
		t.Fatalf("Dovecot's imap: %v\n%s", err, out)
	}
	return string(out)
}

// dovecotView reads INBOX of user as Dovecot's imap(1) serves it, run
// preauthenticated on the Maildirs under mailRoot.
func dovecotView(t *testing.T, mailRoot, user string) folderView {
	t.Helper()
	out := dovecotIMAP(t, mailRoot, user, "a SELECT INBOX\r\nb UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
	v := folderView{byUID: map[uint32]string{}}
	if m := regexp.MustCompile(`UIDVALIDITY (\d+)`).FindStringSubmatch(out); m != nil {
		fmt.Sscan(m[1], &v.uidValidity)
	}
	// * 1 FETCH (UID 1 FLAGS (\Seen) BODY[HEADER.FIELDS (SUBJECT)] {21}
	// Subject: message 0
	fetchRE := regexp.MustCompile(`(?s)\* \d+ FETCH \(UID (\d+) FLAGS \(([^)]*)\) BODY\[HEADER\.FIELDS \(SUBJECT\)\] \{\d+\}\r\nSubject: ([^\r]*)\r\n`)
	for _, m := range fetchRE.FindAllStringSubmatch(out, -1) {
		var uid uint32
		fmt.Sscan(m[1], &uid)
		flags := strings.Fields(m[2])
		flags = slices.DeleteFunc(flags, func(f string) bool { return f == `\Recent` })
		slices.Sort(flags)
		v.byUID[uid] = m[3] + " " + strings.Join(flags, ",")
	}
	return v
}

// openUp lets Dovecot's unprivileged user (when the test runs as root)
// reach and change the Maildirs under root.
func openUp(t *testing.T, root string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	for d := root; d != "/" && d != "."; d = filepath.Dir(d) {
		if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o005 != 0o005 {
			os.Chmod(d, st.Mode().Perm()|0o005)
		}
	}
	if out, err := exec.Command("chown", "-R", "nobody:nogroup", root).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
}

// TestDovecotExport: after `mailroom dovecot export`, Dovecot serves
// every folder with mailroom's UIDVALIDITY and each message under
// mailroom's UID (with a gap where one was expunged) and flags, so IMAP
// clients see no change across the move.
func TestDovecotExport(t *testing.T) {
	cfgPath, dataDir, _ := populated(t)
	want := mailroomView(t, cfgPath, "example.org/alice")
	if len(want.byUID) != 4 {
		t.Fatalf("mailroom's INBOX: %+v", want)
	}
	out, code := cli(t, "", "dovecot", "export", "-config", cfgPath)
	if code != 0 || !strings.Contains(out, "alice@example.org: dovecot-uidlist written in") || !strings.Contains(out, "bob@example.org:") {
		t.Fatalf("dovecot export: %d\n%s", code, out)
	}
	if out, code := cli(t, "", "dovecot", "export", "nobody@example.org", "-config", cfgPath); code != exitNoUser {
		t.Errorf("export of no such account: %d %s", code, out)
	}
	// Dovecot gets a copy (it writes its own index files into the
	// Maildirs, and as root the test gives them to its user).
	mailRoot := filepath.Join(mailtest.ShortTempDir(t), "mail")
	if err := os.CopyFS(mailRoot, os.DirFS(filepath.Join(dataDir, "mail"))); err != nil {
		t.Fatal(err)
	}
	openUp(t, mailRoot)
	got := dovecotView(t, mailRoot, "alice@example.org")
	if got.uidValidity != want.uidValidity || len(got.byUID) != len(want.byUID) {
		t.Fatalf("Dovecot: UIDVALIDITY %d, %d messages; mailroom: %d, %d", got.uidValidity, len(got.byUID), want.uidValidity, len(want.byUID))
	}
	for uid, m := range want.byUID {
		if got.byUID[uid] != m {
			t.Errorf("UID %d: Dovecot has %q, mailroom %q", uid, got.byUID[uid], m)
		}
	}
}

// TestMoveFromDovecot: a Maildir that Dovecot wrote (messages appended,
// one expunged, flags and a keyword set through its own imap), copied
// into a mail home as docs/admin.md says, is served by mailroom with
// Dovecot's UIDVALIDITY, UIDs, flags and keywords.
func TestMoveFromDovecot(t *testing.T) {
	dovecotRoot := filepath.Join(mailtest.ShortTempDir(t), "mail")
	if err := os.MkdirAll(filepath.Join(dovecotRoot, "example.org", "alice"), 0o700); err != nil {
		t.Fatal(err)
	}
	openUp(t, dovecotRoot)
	var cmds strings.Builder
	for i := range 4 {
		msg := fmt.Sprintf("From: x@remote.example\r\nSubject: from dovecot %d\r\n\r\nbody %d\r\n", i, i)
		fmt.Fprintf(&cmds, "a%d APPEND INBOX {%d+}\r\n%s\r\n", i, len(msg), msg)
	}
	cmds.WriteString("s SELECT INBOX\r\nd UID STORE 2 +FLAGS.SILENT (\\Deleted)\r\ne EXPUNGE\r\n" +
		"f UID STORE 3 +FLAGS.SILENT (\\Flagged $Work)\r\ng UID STORE 4 +FLAGS.SILENT (\\Seen)\r\n")
	dovecotIMAP(t, dovecotRoot, "alice@example.org", cmds.String())
	want := dovecotView(t, dovecotRoot, "alice@example.org")
	if len(want.byUID) != 3 || !strings.Contains(want.byUID[3], "$Work") {
		t.Fatalf("Dovecot's INBOX: %+v", want)
	}

	cfgPath := writeConfig(t)
	if out, code := cli(t, "pw\n", "user", "add", "alice@example.org", "-config", cfgPath); code != 0 {
		t.Fatalf("user add: %d %s", code, out)
	}
	// docs/admin.md, "Moving from Dovecot", step 3.
	home := filepath.Join(filepath.Dir(cfgPath), "data", "mail", "example.org", "alice")
	os.RemoveAll(filepath.Join(home, "Maildir"))
	if err := os.CopyFS(filepath.Join(home, "Maildir"), os.DirFS(filepath.Join(dovecotRoot, "example.org", "alice", "Maildir"))); err != nil {
		t.Fatal(err)
	}
	sess, done := openFolders(t, cfgPath, "example.org/alice")
	defer done()
	got := readView(t, sess)
	if got.uidValidity != want.uidValidity || len(got.byUID) != len(want.byUID) {
		t.Fatalf("mailroom: UIDVALIDITY %d, %d messages; Dovecot: %d, %d", got.uidValidity, len(got.byUID), want.uidValidity, len(want.byUID))
	}
	for uid, m := range want.byUID {
		if got.byUID[uid] != m {
			t.Errorf("UID %d: mailroom has %q, Dovecot %q", uid, got.byUID[uid], m)
		}
	}
}
