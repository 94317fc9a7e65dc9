package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// muttPipes are the mutt patterns whose messages muttRead pipes out,
// by the name of their file: every message, the read, the flagged, the
// replied and the unread ones (as mutt sees them).
var muttPipes = []struct{ name, pattern string }{
	{"all", "~A"},
	{"read", "~R"},
	{"flagged", "~F"},
	{"replied", "~Q"},
	{"unread", "~U"},
}

// runMutt runs mutt on the mbox file box with the keys pushed (a push
// command's argument), in a private tmux server since mutt needs a
// terminal, and waits for it to quit (the keys must end with <quit>).
// readOnly opens the file with -R. mutt takes its dotlock and fcntl
// lock as it does on a spool file.
func runMutt(t *testing.T, box string, readOnly bool, keys string) {
	t.Helper()
	mutt := mailtest.NeedTool(t, "mutt")
	tmux := mailtest.NeedTool(t, "tmux")
	dir := t.TempDir()
	rc := filepath.Join(dir, "muttrc")
	// No question may stop it: deletions purged without asking, no move
	// of read mail, no "press any key", messages left new when seen
	// (mark_old), file order.
	if err := os.WriteFile(rc, []byte(fmt.Sprintf(`set mbox_type=mbox
set folder=%[1]s
set spoolfile=%[2]s
set move=no
set mark_old=no
set delete=yes
set quit=yes
set wait_key=no
set pipe_split=yes
set pipe_decode=no
set beep=no
set sort=mailbox-order
set confirmappend=no
set read_inc=0
set write_inc=0
push "%[3]s"
`, dir, box, keys)), 0o644); err != nil {
		t.Fatal(err)
	}
	ro := ""
	if readOnly {
		ro = "-R"
	}
	sock := filepath.Join(dir, "tmux.sock")
	status := filepath.Join(dir, "status")
	cmd := exec.Command(tmux, "-S", sock, "-f", "/dev/null", "new-session", "-d", "-x", "200", "-y", "50",
		fmt.Sprintf("%s -n -F %s %s -f %s 2>%s/stderr; echo $? >%s", mutt, rc, ro, box, dir, status))
	cmd.Env = []string{"TERM=xterm", "HOME=" + dir, "PATH=/usr/bin:/bin", "LANG=C.UTF-8"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v\n%s", err, out)
	}
	defer exec.Command(tmux, "-S", sock, "kill-server").Run()
	if !mailtest.Poll(30*time.Second, func() bool {
		_, err := os.Stat(status)
		return err == nil
	}) {
		screen, _ := exec.Command(tmux, "-S", sock, "capture-pane", "-p").CombinedOutput()
		t.Fatalf("mutt did not quit within 30 s; its screen:\n%s", screen)
	}
	mailtest.Eventually(t, 5*time.Second, "mutt's exit status written", func() bool {
		b, _ := os.ReadFile(status)
		return strings.HasSuffix(string(b), "\n")
	})
	if b, _ := os.ReadFile(status); strings.TrimSpace(string(b)) != "0" {
		errs, _ := os.ReadFile(filepath.Join(dir, "stderr"))
		t.Fatalf("mutt exited %s: %s", b, errs)
	}
}

// muttRead opens box read-only in mutt and returns the subjects of the
// messages each of muttPipes' patterns matches, as mutt pipes them out
// (tag-prefix-cond: nothing for a pattern that matches none), and the
// whole text of every message (From lines included).
func muttRead(t *testing.T, box string) (subjects map[string][]string, all string) {
	t.Helper()
	dir := t.TempDir()
	var keys strings.Builder
	for _, p := range muttPipes {
		fmt.Fprintf(&keys, "<tag-pattern>%s<enter><tag-prefix-cond><pipe-message>cat >>%s<enter><end-cond><untag-pattern>~A<enter>", p.pattern, filepath.Join(dir, p.name))
	}
	keys.WriteString("<quit>")
	runMutt(t, box, true, keys.String())
	subjects = map[string][]string{}
	re := regexp.MustCompile(`(?m)^Subject: (.*)$`)
	for _, p := range muttPipes {
		b, err := os.ReadFile(filepath.Join(dir, p.name))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			subjects[p.name] = append(subjects[p.name], m[1])
		}
		if p.name == "all" {
			all = string(b)
		}
	}
	return subjects, all
}

// TestMboxMutt: mutt, the judge of what mutt users see, reads the file
// that mailroom wrote. After STORE and an EXPUNGE (which rewrites the
// file with the flags), mutt sees the same messages with the flags set
// over IMAP: read (\Seen), flagged, replied (\Answered), unread. Then
// mutt deletes a message and saves the file (its own rewrite, under its
// locks) while an IMAP session is selected: the session is told of the
// expunge at its next NOOP, and the messages still there keep their
// UIDs and flags; a later delivery gets a new UID and mutt reads it.
func TestMboxMutt(t *testing.T) {
	t.Parallel()
	s := startIMAPServer(t, mboxConfig, "alice@example.org")
	for _, subj := range []string{"one", "two", "three", "doomed"} {
		deliverLMTP(t, s.LMTP, "carol@example.net", "alice@example.org",
			fmt.Sprintf("Subject: %s\n\nbody of %s\nFrom a line that mboxrd quotes\n", subj, subj))
	}
	box := filepath.Join(s.DataDir, "mail", "example.org", "alice", "mbox")

	ic := dialIMAP(t, s.IMAP, nil)
	ic.login("alice@example.org")
	ic.ok("SELECT INBOX")
	ic.ok(`STORE 1 +FLAGS (\Seen)`)
	ic.ok(`STORE 2 +FLAGS (\Seen \Flagged \Answered)`)
	ic.ok(`STORE 4 +FLAGS (\Deleted)`)
	ic.ok("EXPUNGE")
	uids := uidsOf(t, ic)
	if len(uids) != 3 {
		t.Fatalf("UIDs after the expunge: %v", uids)
	}

	subjects, all := muttRead(t, box)
	want := map[string][]string{
		"all":     {"one", "two", "three"},
		"read":    {"one", "two"},
		"flagged": {"two"},
		"replied": {"two"},
		"unread":  {"three"},
	}
	for _, p := range muttPipes {
		if !slices.Equal(subjects[p.name], want[p.name]) {
			t.Errorf("mutt's %s messages (%s): %q, want %q", p.name, p.pattern, subjects[p.name], want[p.name])
		}
	}
	for _, subj := range []string{"one", "two", "three"} {
		if !strings.Contains(all, "\nbody of "+subj+"\n>From a line that mboxrd quotes\n") {
			t.Errorf("mutt's text of %q is not what was delivered (mboxrd-quoted):\n%s", subj, all)
		}
	}

	// mutt deletes "two" and saves the file.
	runMutt(t, box, false, "<delete-pattern>~s two<enter><sync-mailbox><quit>")
	untagged := ic.ok("NOOP")
	if !slices.Contains(untagged, "* 2 EXPUNGE") {
		raw, _ := os.ReadFile(box)
		t.Errorf("NOOP after mutt's deletion: %q, want * 2 EXPUNGE\nthe file:\n%s", untagged, raw)
	}
	got := fetchSubjects(t, ic)
	if len(got) != 2 || got[0].uid != uids[0] || got[0].subject != "one" || got[1].uid != uids[2] || got[1].subject != "three" {
		raw, _ := os.ReadFile(box)
		t.Fatalf("after mutt's deletion mailroom serves %+v, want one (UID %d) and three (UID %d)\nthe file:\n%s", got, uids[0], uids[2], raw)
	}
	if !strings.Contains(got[0].flags, `\Seen`) || strings.Contains(got[1].flags, `\Seen`) {
		t.Errorf("flags after mutt's rewrite: %+v", got)
	}

	// A delivery after mutt's rewrite: a new UID, and mutt reads it.
	deliverLMTP(t, s.LMTP, "carol@example.net", "alice@example.org", "Subject: four\n\nbody of four\n")
	ic.ok("NOOP")
	got = fetchSubjects(t, ic)
	if len(got) != 3 || got[0].uid != uids[0] || got[1].uid != uids[2] || got[2].subject != "four" || got[2].uid <= uids[2] {
		t.Errorf("after a delivery: %+v", got)
	}
	subjects, _ = muttRead(t, box)
	if w := []string{"one", "three", "four"}; !slices.Equal(subjects["all"], w) {
		t.Errorf("mutt reads %q after the delivery, want %q", subjects["all"], w)
	}
	if w := []string{"three", "four"}; !slices.Equal(subjects["unread"], w) {
		t.Errorf("mutt's unread messages %q, want %q", subjects["unread"], w)
	}
}

// uidsOf is UID SEARCH ALL's answer.
func uidsOf(t *testing.T, ic *imapRaw) []uint32 {
	t.Helper()
	var out []uint32
	for _, l := range ic.ok("UID SEARCH ALL") {
		for _, f := range strings.Fields(strings.TrimPrefix(l, "* SEARCH")) {
			var u uint32
			if _, err := fmt.Sscan(f, &u); err == nil {
				out = append(out, u)
			}
		}
	}
	return out
}

type fetchedSubject struct {
	uid     uint32
	subject string
	flags   string
}

// fetchSubjects fetches every message's UID, flags and Subject.
func fetchSubjects(t *testing.T, ic *imapRaw) []fetchedSubject {
	t.Helper()
	var out []fetchedSubject
	uidRe := regexp.MustCompile(`UID (\d+)`)
	flagsRe := regexp.MustCompile(`FLAGS \(([^)]*)\)`)
	subjRe := regexp.MustCompile(`Subject: ([^\r\n]*)`)
	for _, l := range ic.ok("FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (Subject)])") {
		var f fetchedSubject
		if m := uidRe.FindStringSubmatch(l); m != nil {
			fmt.Sscan(m[1], &f.uid)
		}
		if m := flagsRe.FindStringSubmatch(l); m != nil {
			f.flags = m[1]
		}
		if m := subjRe.FindStringSubmatch(l); m != nil {
			f.subject = m[1]
		}
		out = append(out, f)
	}
	return out
}
