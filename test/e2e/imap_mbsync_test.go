package e2e

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailroom/internal/mailtest"
)

// mailSet is a folder's messages by Message-ID (without <>), each with
// its flags as Maildir letters, sorted ("FS"), and how many copies there
// are.
type mailSet map[string]mailEntry

type mailEntry struct {
	Flags  string
	Copies int
}

// imapFlagLetters maps the IMAP system flags to Maildir letters.
var imapFlagLetters = map[goimap.Flag]byte{
	goimap.FlagDraft: 'D', goimap.FlagFlagged: 'F', goimap.FlagAnswered: 'R',
	goimap.FlagSeen: 'S', goimap.FlagDeleted: 'T',
}

// serverSet returns folder's messages as the IMAP server shows them.
func serverSet(t *testing.T, c *imapclient.Client, folder string) mailSet {
	t.Helper()
	sel, err := c.Select(folder, nil).Wait()
	if err != nil {
		t.Fatalf("SELECT %s: %v", folder, err)
	}
	out := mailSet{}
	if sel.NumMessages == 0 {
		return out
	}
	var all goimap.SeqSet
	all.AddRange(1, 0)
	msgs, err := c.Fetch(all, &goimap.FetchOptions{Flags: true, Envelope: true}).Collect()
	if err != nil {
		t.Fatalf("FETCH in %s: %v", folder, err)
	}
	for _, m := range msgs {
		var letters []byte
		for _, f := range m.Flags {
			if l, ok := imapFlagLetters[f]; ok {
				letters = append(letters, l)
			}
		}
		slices.Sort(letters)
		e := out[m.Envelope.MessageID]
		out[m.Envelope.MessageID] = mailEntry{Flags: string(letters), Copies: e.Copies + 1}
	}
	return out
}

// localSet returns the messages of a local Maildir folder (new/ and cur/).
func localSet(t *testing.T, dir string) mailSet {
	t.Helper()
	out := mailSet{}
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatalf("local Maildir: %v", err)
		}
		for _, e := range entries {
			id := headerMessageID(t, filepath.Join(dir, sub, e.Name()))
			var flags string
			if _, info, ok := strings.Cut(e.Name(), ":2,"); ok {
				b := []byte(strings.Map(func(r rune) rune {
					if strings.ContainsRune("DFRST", r) {
						return r
					}
					return -1
				}, info))
				slices.Sort(b)
				flags = string(b)
			}
			old := out[id]
			out[id] = mailEntry{Flags: flags, Copies: old.Copies + 1}
		}
	}
	return out
}

// localFiles lists the names in a local Maildir folder's new/ and cur/.
func localFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range entries {
			out = append(out, sub+"/"+e.Name())
		}
	}
	return out
}

// headerMessageID reads the Message-ID of a message file, without <>.
func headerMessageID(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		if l == "" {
			break
		}
		if v, ok := strings.CutPrefix(strings.ToLower(l), "message-id:"); ok {
			return strings.Trim(strings.TrimSpace(l[len(l)-len(v):]), "<>")
		}
	}
	t.Fatalf("%s has no Message-ID", path)
	return ""
}

// wantSet builds a mailSet of single copies from id=flags pairs.
func wantSet(pairs ...string) mailSet {
	out := mailSet{}
	for _, p := range pairs {
		id, flags, _ := strings.Cut(p, "=")
		out[id] = mailEntry{Flags: flags, Copies: 1}
	}
	return out
}

func checkSet(t *testing.T, what string, got, want mailSet) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Errorf("%s:\n got %v\nwant %v", what, got, want)
	}
}

// mbsyncMessage is a message with a Message-ID, to be told apart on both
// sides.
func mbsyncMessage(id, subject string) string {
	return fmt.Sprintf("From: Carol <carol@example.net>\nTo: Alice <alice@example.org>\nSubject: %s\n"+
		"Message-ID: <%s>\nDate: Mon, 02 Jan 2006 15:04:05 +0000\n\n%s\n", subject, id, subject)
}

// TestIMAPMbsync syncs an account to a local Maildir with mbsync (isync)
// over STARTTLS, verifying the server's certificate: first the whole
// account, then, after changes on both sides (a delivery, a flag change
// and an expunge on the server; a flag change, a new message and a
// deletion in the local Maildir), an incremental sync that must leave both
// sides with the same messages, each once, with the same flags; a third
// sync changes nothing on either side.
func TestIMAPMbsync(t *testing.T) {
	t.Parallel()
	for _, f := range storeFormats {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			mbsyncRound(t, f.config)
		})
	}
}

func mbsyncRound(t *testing.T, config string) {
	bin := mailtest.NeedTool(t, "mbsync")
	s := startIMAPServer(t, config, "alice@example.org")
	const user = "alice@example.org"

	for i := 1; i <= 3; i++ {
		deliverLMTP(t, s.LMTP, "carol@example.net", user, mbsyncMessage(fmt.Sprintf("m%d@example.net", i), fmt.Sprintf("inbox %d", i)))
	}
	c := imapLogin(t, s.IMAP, user, nil)
	for i := 1; i <= 2; i++ {
		msg := crlf(mbsyncMessage(fmt.Sprintf("a%d@example.net", i), fmt.Sprintf("archived %d", i)))
		cmd := c.Append("Archive", int64(len(msg)), &goimap.AppendOptions{Flags: []goimap.Flag{goimap.FlagSeen}})
		if _, err := cmd.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := cmd.Wait(); err != nil {
			t.Fatalf("APPEND to Archive: %v", err)
		}
	}

	dir := t.TempDir()
	local := filepath.Join(dir, "mail")
	if err := os.Mkdir(local, 0o700); err != nil { // mbsync opens it, but does not make it
		t.Fatal(err)
	}
	host, port := hostPort(t, s.IMAP)
	rc := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(rc, []byte(fmt.Sprintf(`IMAPAccount mailroom
Host %s
Port %s
User %s
Pass %s
SSLType STARTTLS
CertificateFile %s
AuthMechs LOGIN
Timeout 30

IMAPStore remote
Account mailroom

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
CopyArrivalDate yes
`, host, port, user, smtpPassword, s.Cert, local, local)), 0o600); err != nil {
		t.Fatal(err)
	}
	sync := func(what string) string {
		t.Helper()
		cmd := exec.Command(bin, "-V", "-c", rc, "-a")
		cmd.Dir = dir
		start := time.Now()
		out, err := cmd.CombinedOutput()
		t.Logf("mbsync (%s) took %v", what, time.Since(start))
		if err != nil {
			t.Fatalf("mbsync (%s): %v\n%s", what, err, strings.ReplaceAll(string(out), smtpPassword, "<password>"))
		}
		return string(out)
	}

	// 1. The first sync copies everything down, folders included.
	sync("first")
	for _, f := range []string{"Sent", "Drafts", "Trash", "Junk"} {
		if _, err := os.Stat(filepath.Join(local, f, "cur")); err != nil {
			t.Errorf("the local Maildir lacks the folder %s: %v", f, err)
		}
	}
	checkSet(t, "local INBOX after the first sync", localSet(t, filepath.Join(local, "INBOX")),
		wantSet("m1@example.net=", "m2@example.net=", "m3@example.net="))
	checkSet(t, "local Archive after the first sync", localSet(t, filepath.Join(local, "Archive")),
		wantSet("a1@example.net=S", "a2@example.net=S"))

	// 2. Changes on the server: a delivery, a flag, an expunge.
	deliverLMTP(t, s.LMTP, "carol@example.net", user, mbsyncMessage("m4@example.net", "inbox 4"))
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(goimap.SeqSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true,
		Flags: []goimap.Flag{goimap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatalf("STORE 1 +FLAGS (\\Flagged): %v", err)
	}
	if err := c.Store(goimap.SeqSetNum(2), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true,
		Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatalf("STORE 2 +FLAGS (\\Deleted): %v", err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatalf("EXPUNGE: %v", err)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	// Check the server did what was asked before blaming mbsync.
	checkSet(t, "server INBOX after the server-side changes", serverSet(t, c, "INBOX"),
		wantSet("m1@example.net=F", "m3@example.net=", "m4@example.net="))

	// ... and in the local Maildir: a flag, a new message, a deletion.
	m3 := localPath(t, filepath.Join(local, "INBOX"), "m3@example.net")
	if err := os.Rename(m3, withSeen(m3)); err != nil {
		t.Fatal(err)
	}
	dropFile(t, filepath.Join(local, "INBOX"), "new", fmt.Sprintf("%d.M9P9.laptop", time.Now().Unix()),
		mbsyncMessage("l1@example.net", "written locally"))
	if err := os.Remove(localPath(t, filepath.Join(local, "Archive"), "a1@example.net")); err != nil {
		t.Fatal(err)
	}

	// 3. The incremental sync merges both.
	sync("incremental")
	wantInbox := wantSet("m1@example.net=F", "m3@example.net=S", "m4@example.net=", "l1@example.net=")
	wantArchive := wantSet("a2@example.net=S")
	checkSet(t, "server INBOX after the incremental sync", serverSet(t, c, "INBOX"), wantInbox)
	checkSet(t, "local INBOX after the incremental sync", localSet(t, filepath.Join(local, "INBOX")), wantInbox)
	checkSet(t, "server Archive after the incremental sync", serverSet(t, c, "Archive"), wantArchive)
	checkSet(t, "local Archive after the incremental sync", localSet(t, filepath.Join(local, "Archive")), wantArchive)
	for _, f := range []string{"Sent", "Drafts", "Trash", "Junk"} {
		checkSet(t, "server "+f, serverSet(t, c, f), mailSet{})
		checkSet(t, "local "+f, localSet(t, filepath.Join(local, f)), mailSet{})
	}

	// 4. A third sync is a no-op: same files here, same UIDs and flags
	// there.
	before := map[string]folderState{}
	beforeFiles := map[string][]string{}
	for _, f := range []string{"INBOX", "Archive"} {
		before[f] = selectState(t, c, f)
		beforeFiles[f] = localFiles(t, filepath.Join(local, f))
	}
	c.Unselect().Wait()
	sync("no-op")
	for _, f := range []string{"INBOX", "Archive"} {
		sameState(t, "server "+f+" after a sync with nothing to do", selectState(t, c, f), before[f])
		if got := localFiles(t, filepath.Join(local, f)); !slices.Equal(got, beforeFiles[f]) {
			t.Errorf("local %s changed in a sync with nothing to do:\n got %q\nwant %q", f, got, beforeFiles[f])
		}
	}
}

// localPath finds the file of the message with Message-ID id in a local
// Maildir folder.
func localPath(t *testing.T, dir, id string) string {
	t.Helper()
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range entries {
			p := filepath.Join(dir, sub, e.Name())
			if headerMessageID(t, p) == id {
				return p
			}
		}
	}
	t.Fatalf("no message %s in %s", id, dir)
	return ""
}
