package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"mailroom/internal/mailtest"
	"mailroom/mailbox/mbox"
)

// mboxConfig is imapConfigTemplate's extra part for an mbox store.
const mboxConfig = "[delivery]\nformat = \"mbox\"\n"

// storeFormats are the two stores, for the IMAP tests that run on both
// (their extra configuration for startIMAPServer).
var storeFormats = []struct{ name, config string }{
	{"maildir", ""},
	{"mbox", mboxConfig},
}

// storedMessages returns the messages in home's INBOX as stored: the
// files of Maildir/new in delivery order, or the messages of the mbox
// (its quoting undone, as mbox.Split reads them).
func storedMessages(t *testing.T, s *imapServer, format, home string) []stored {
	t.Helper()
	root := filepath.Join(s.DataDir, "mail")
	if format != "mbox" {
		return maildirNew(t, root, home)
	}
	f, err := os.Open(filepath.Join(root, home, "mbox"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	msgs, err := mbox.Split(f)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]stored, len(msgs))
	for i, m := range msgs {
		out[i] = stored{Name: fmt.Sprint(i), Data: string(m.Body)}
	}
	return out
}

// dovecotIMAP runs Dovecot's imap (dovecot-imapd) preauthenticated on
// stdin and stdout as the owner of the mail home home (an absolute
// path), with mail_location = mbox:~/mail:INBOX=~/mbox, and returns what
// it answered to commands (CRLF lines, literals inline). Run as root,
// the home is given to nobody first (Dovecot refuses mail access as
// uid 0), and the directories above it made traversable.
func dovecotIMAP(t *testing.T, home string, commands ...string) string {
	t.Helper()
	bin := mailtest.NeedTool(t, "imap") // /usr/lib/dovecot/imap
	dir := t.TempDir()
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		if err := filepath.WalkDir(home, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, uid, gid)
		}); err != nil {
			t.Fatal(err)
		}
		for d := filepath.Dir(home); d != "/" && d != "."; d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err == nil {
				os.Chmod(d, fi.Mode().Perm()|0o011)
			}
		}
		os.Chmod(dir, 0o755)
	}
	conf := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
ssl = no
mail_location = mbox:~/mail:INBOX=~/mbox
# Flags written into the file at once, as mutt writes them, rather than
# kept in Dovecot's own index until it next rewrites the file.
mbox_lazy_writes = no
mail_uid = %[2]d
mail_gid = %[3]d
first_valid_uid = %[2]d
first_valid_gid = %[3]d
`, dir, uid, gid)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Env = []string{"USER=alice", "HOME=" + home, "PATH=/usr/bin:/bin"}
	cmd.Stdin = strings.NewReader(strings.Join(commands, "\r\n") + "\r\nZZ LOGOUT\r\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
		t.Fatalf("dovecot imap: %v\n%s\n%s", err, out, log)
	}
	return string(out)
}

// fetchedLines is fetchedBodies for imapRaw's untagged lines, which
// hold each literal in place of its "{n}": the body is what follows
// "BODY[] " to the line's final ")".
func fetchedLines(lines []string) (bodies, flags map[int]string) {
	bodies, flags = map[int]string{}, map[int]string{}
	re := regexp.MustCompile(`^\* (\d+) FETCH \(`)
	for _, l := range lines {
		m := re.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		seq, _ := strconv.Atoi(m[1])
		if f := regexp.MustCompile(`FLAGS \(([^)]*)\)`).FindStringSubmatch(l); f != nil {
			flags[seq] = f[1]
		}
		if i := strings.Index(l, "BODY[] "); i >= 0 {
			bodies[seq] = strings.TrimSuffix(l[i+len("BODY[] "):], ")")
		}
	}
	return bodies, flags
}

// fetchedBodies reads "* n FETCH (... BODY[] {k}\r\n<k bytes>)" answers
// (Dovecot's or mailroom's, literals inline) into the bodies by
// sequence number and the flags by sequence number.
func fetchedBodies(t *testing.T, out string) (bodies, flags map[int]string) {
	t.Helper()
	bodies, flags = map[int]string{}, map[int]string{}
	re := regexp.MustCompile(`\* (\d+) FETCH \(`)
	for _, loc := range re.FindAllStringSubmatchIndex(out, -1) {
		seq, _ := strconv.Atoi(out[loc[2]:loc[3]])
		rest := out[loc[1]:]
		if m := regexp.MustCompile(`^[^\r\n]*?FLAGS \(([^)]*)\)`).FindStringSubmatch(rest); m != nil {
			flags[seq] = m[1]
		}
		m := regexp.MustCompile(`^[^\r\n]*?BODY\[\] \{(\d+)\}\r\n`).FindStringSubmatchIndex(rest)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(rest[m[2]:m[3]])
		bodies[seq] = rest[m[1] : m[1]+n]
	}
	return bodies, flags
}

// quoteFrom adds one '>' to every line matching ^>*From , which is what
// Dovecot serves of an mboxrd file (it does not undo the quoting).
func quoteFrom(s string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimLeft(l, ">"), "From ") {
			lines[i] = ">" + l
		}
	}
	return strings.Join(lines, "")
}

// TestMboxDovecot: format = "mbox" end to end, judged by Dovecot reading
// and writing the very files. Mail delivered over LMTP is served by
// mailroom's IMAP as delivered (trace fields added); after STORE and
// EXPUNGE (which rewrites the file with the flags), Dovecot shows the
// same messages, the same text (with mboxrd's quoting, which it shows
// raw) and the same flags. Then Dovecot appends a message, flags one and
// expunges another while mailroom's session is open: mailroom keeps the
// UID of the message still there, takes the flags Dovecot wrote, and
// gives the new message a new UID.
func TestMboxDovecot(t *testing.T) {
	t.Parallel()
	s := startIMAPServer(t, mboxConfig, "alice@example.org")
	msgs := []string{
		"Subject: first\n\nFrom the start of a line\n>From quoted once\nGrüße\n",
		"Subject: doomed\n\nbye\n",
		"Subject: third\nStatus: RO\n\nno flag from a sender\n",
	}
	for _, m := range msgs {
		deliverLMTP(t, s.LMTP, "carol@example.net", "alice@example.org", m)
	}
	home := filepath.Join(s.DataDir, "mail", "example.org", "alice")
	if _, err := os.Stat(filepath.Join(home, "Maildir")); err == nil {
		t.Fatal("format = \"mbox\" made a Maildir")
	}

	ic := dialIMAP(t, s.IMAP, nil)
	ic.login("alice@example.org")
	uidValidity := regexp.MustCompile(`UIDVALIDITY (\d+)`)
	mrUV := uidValidity.FindStringSubmatch(strings.Join(ic.ok("SELECT INBOX"), "\n"))
	ic.ok(`STORE 1 +FLAGS (\Seen \Flagged $Work)`)
	ic.ok(`STORE 2 +FLAGS (\Deleted)`)
	ic.ok("EXPUNGE")
	mr, mrFlags := fetchedLines(ic.ok("FETCH 1:* (FLAGS BODY.PEEK[])"))
	if len(mr) != 2 {
		t.Fatalf("mailroom serves %d messages after the expunge, want 2: %v", len(mr), mr)
	}
	for i, want := range []string{msgs[0], "Subject: third\n\nno flag from a sender\n"} {
		if got := mr[i+1]; !strings.HasSuffix(got, crlf(want)) || !strings.Contains(got, "Return-Path: <carol@example.net>\r\n") {
			t.Errorf("mailroom serves message %d as %q, want trace fields then %q", i+1, got, crlf(want))
		}
	}
	if f := strings.Fields(mrFlags[1]); !slices.Contains(f, `\Seen`) || !slices.Contains(f, `\Flagged`) || !slices.Contains(f, "$Work") || strings.Contains(mrFlags[2], `\Seen`) {
		t.Errorf("mailroom's flags %v", mrFlags)
	}
	uids := ic.ok("UID SEARCH ALL")

	// Dovecot reads the file mailroom wrote.
	out := dovecotIMAP(t, home, "a SELECT INBOX", "b FETCH 1:* (UID FLAGS BODY.PEEK[])")
	dv, dvFlags := fetchedBodies(t, out)
	// The rewrite's X-IMAPbase and X-UID fields: Dovecot shows
	// mailroom's UIDVALIDITY and UIDs.
	if dvUV := uidValidity.FindStringSubmatch(out); mrUV == nil || dvUV == nil || dvUV[1] != mrUV[1] {
		t.Errorf("UIDVALIDITY: mailroom %v, Dovecot %v", mrUV, dvUV)
	}
	if want := strings.Fields(strings.Join(uids, " ")); len(want) < 4 || !strings.Contains(out, "UID "+want[2]+" ") || !strings.Contains(out, "UID "+want[3]+" ") {
		t.Errorf("Dovecot does not show mailroom's UIDs %v:\n%s", want, out)
	}
	if len(dv) != 2 {
		t.Fatalf("Dovecot sees %d messages, want 2:\n%s", len(dv), out)
	}
	for i := 1; i <= 2; i++ {
		if dv[i] != quoteFrom(mr[i]) {
			t.Errorf("message %d: Dovecot reads\n%q\nmailroom serves (quoted)\n%q", i, dv[i], quoteFrom(mr[i]))
		}
	}
	if f := strings.Fields(dvFlags[1]); !slices.Contains(f, `\Seen`) || !slices.Contains(f, `\Flagged`) || !slices.Contains(f, "$Work") {
		t.Errorf("Dovecot reads the flags of message 1 as %q", dvFlags[1])
	}
	if strings.Contains(dvFlags[2], `\Seen`) {
		t.Errorf("Dovecot reads message 2 as %q: a sender's Status: was believed", dvFlags[2])
	}

	// Dovecot writes: an append, a flag, an expunge (its in-place rewrite).
	added := "Subject: from dovecot\r\n\r\nwritten by Dovecot\r\n"
	out = dovecotIMAP(t, home, fmt.Sprintf("b APPEND INBOX (\\Answered) {%d+}\r\n%s", len(added), added))
	if !strings.Contains(out, "b OK") {
		t.Fatalf("Dovecot's APPEND:\n%s", out)
	}
	out = dovecotIMAP(t, home, "a SELECT INBOX", `c STORE 1 +FLAGS (\Answered)`)
	if !strings.Contains(out, `* 1 FETCH (FLAGS (\Answered`) {
		t.Fatalf("Dovecot's STORE:\n%s", out)
	}
	out = dovecotIMAP(t, home, "a SELECT INBOX", `d STORE 2 +FLAGS (\Deleted)`, "e EXPUNGE")
	if !strings.Contains(out, "* 2 EXPUNGE") {
		t.Fatalf("Dovecot's EXPUNGE:\n%s", out)
	}
	ic.ok("NOOP")
	after := ic.ok("UID FETCH 1:* (UID FLAGS BODY.PEEK[])")
	got, gotFlags := fetchedLines(after)
	if len(got) != 2 {
		t.Fatalf("after Dovecot's changes mailroom serves %d messages, want 2:\n%s", len(got), strings.Join(after, "\n"))
	}
	firstUID := strings.Fields(strings.Join(uids, " "))
	if len(firstUID) < 3 || !strings.Contains(after[0]+after[1], "UID "+firstUID[2]+" ") {
		t.Errorf("the first message lost its UID %v: %q", firstUID, after)
	}
	if got[1] != mr[1] {
		t.Errorf("the first message changed: %q, was %q", got[1], mr[1])
	}
	if got[2] != added {
		t.Errorf("Dovecot's message reads %q, want %q", got[2], added)
	}
	if f := strings.Fields(gotFlags[1]); !slices.Contains(f, `\Answered`) || !slices.Contains(f, `\Seen`) {
		raw, _ := os.ReadFile(filepath.Join(home, "mbox"))
		t.Errorf("flags of the first message after Dovecot's STORE: %q\n%s\n%s", gotFlags[1], out, raw)
	}
	if !strings.Contains(gotFlags[2], `\Answered`) {
		t.Errorf("flags of Dovecot's message: %q", gotFlags[2])
	}
}

// mboxServerConfig is serverConfig with the mbox store.
var mboxServerConfig = serverConfig + mboxConfig

// TestMboxDeliver: `mailroom deliver` with format = "mbox", through a
// running server and alone, stores the message in <home>/mbox with the
// envelope sender in its From line, exactly (trace fields first). A
// home that holds a Maildir is
// refused with exit 75 (the log says why: mailbox.FormatError, tested in
// mailbox/mbox), and nothing is stored beside it.
func TestMboxDeliver(t *testing.T) {
	t.Parallel()
	for _, setup := range deliverSetups {
		t.Run(setup.name, func(t *testing.T) {
			t.Parallel()
			run, root := setup.setup(t, mboxServerConfig, "alice@example.org", "bob@example.org")
			if out, code := run(t, deliverMessage, "deliver", "-f", "carol@example.net", "alice@example.org"); code != 0 {
				t.Fatalf("mailroom deliver: exit %d\n%s", code, out)
			}
			f, err := os.Open(filepath.Join(root, "example.org", "alice", "mbox"))
			if err != nil {
				t.Fatal(err)
			}
			msgs, err := mbox.Split(f)
			f.Close()
			if err != nil || len(msgs) != 1 {
				t.Fatalf("alice's mbox: %d messages, %v", len(msgs), err)
			}
			if msgs[0].Sender != "carol@example.net" {
				t.Errorf("From line sender %q", msgs[0].Sender)
			}
			tr := splitTrace(t, string(msgs[0].Body))
			if tr.ReturnPath != "<carol@example.net>" || tr.Rest != deliverMessage+"\n" {
				t.Errorf("stored %q (Return-Path %s), want %q after the trace fields", tr.Rest, tr.ReturnPath, deliverMessage+"\n")
			}
			// bob's home holds a Maildir: refused, temporarily.
			if err := os.MkdirAll(filepath.Join(root, "example.org", "bob", "Maildir", "cur"), 0o700); err != nil {
				t.Fatal(err)
			}
			out, code := run(t, "Subject: x\n\ny\n", "deliver", "bob@example.org")
			if code != exTempFail {
				t.Errorf("delivery to a home holding a Maildir: exit %d, want %d\n%s", code, exTempFail, out)
			}
			if _, err := os.Stat(filepath.Join(root, "example.org", "bob", "mbox")); err == nil {
				t.Error("an mbox was made beside bob's Maildir")
			}
		})
	}
}
