package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	bolt "go.etcd.io/bbolt"
)

// imapLogin connects to addr in clear (loopback) and logs in as user with
// the tests' password. The client is closed at cleanup.
func imapLogin(t *testing.T, addr, user string, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, smtpPassword).Wait(); err != nil {
		t.Fatalf("LOGIN %s: %v", user, err)
	}
	return c
}

// folderState is what a client that caches a folder relies on: the
// UIDVALIDITY, and each message's UID and flags, here keyed by subject.
type folderState struct {
	UIDValidity uint32
	UIDNext     goimap.UID
	Msgs        map[string]msgState
}

type msgState struct {
	UID   goimap.UID
	Flags []string // sorted
}

// selectState selects folder and fetches every message's UID, flags and
// subject; subjects must be unique.
func selectState(t *testing.T, c *imapclient.Client, folder string) folderState {
	t.Helper()
	sel, err := c.Select(folder, nil).Wait()
	if err != nil {
		t.Fatalf("SELECT %s: %v", folder, err)
	}
	st := folderState{UIDValidity: sel.UIDValidity, UIDNext: sel.UIDNext, Msgs: map[string]msgState{}}
	if sel.NumMessages == 0 {
		return st
	}
	var all goimap.SeqSet
	all.AddRange(1, 0) // 1:*
	msgs, err := c.Fetch(all, &goimap.FetchOptions{UID: true, Flags: true, Envelope: true}).Collect()
	if err != nil {
		t.Fatalf("FETCH 1:* (UID FLAGS ENVELOPE) in %s: %v", folder, err)
	}
	if len(msgs) != int(sel.NumMessages) {
		t.Errorf("FETCH 1:* in %s returned %d messages, SELECT said %d", folder, len(msgs), sel.NumMessages)
	}
	for _, m := range msgs {
		var flags []string
		for _, f := range m.Flags {
			if f != `\Recent` { // IMAP4rev1 only; not a state a client caches
				flags = append(flags, string(f))
			}
		}
		slices.Sort(flags)
		subj := m.Envelope.Subject
		if _, dup := st.Msgs[subj]; dup {
			t.Fatalf("two messages with subject %q in %s", subj, folder)
		}
		if m.UID >= sel.UIDNext {
			t.Errorf("%s: UID %d of %q is not below UIDNEXT %d", folder, m.UID, subj, sel.UIDNext)
		}
		st.Msgs[subj] = msgState{UID: m.UID, Flags: flags}
	}
	return st
}

// subjects returns the sorted subjects in st.
func (st folderState) subjects() []string {
	var out []string
	for s := range st.Msgs {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// sameState fails unless got has the same UIDVALIDITY, messages, UIDs and
// flags as want, and a UIDNEXT no lower.
func sameState(t *testing.T, what string, got, want folderState) {
	t.Helper()
	if got.UIDValidity != want.UIDValidity {
		t.Errorf("%s: UIDVALIDITY %d, was %d", what, got.UIDValidity, want.UIDValidity)
	}
	if got.UIDNext < want.UIDNext {
		t.Errorf("%s: UIDNEXT went back from %d to %d", what, want.UIDNext, got.UIDNext)
	}
	if !slices.Equal(got.subjects(), want.subjects()) {
		t.Errorf("%s: messages %q, were %q", what, got.subjects(), want.subjects())
	}
	for subj, w := range want.Msgs {
		if g, ok := got.Msgs[subj]; ok && (g.UID != w.UID || !slices.Equal(g.Flags, w.Flags)) {
			t.Errorf("%s: %q has UID %d flags %q, had UID %d flags %q", what, subj, g.UID, g.Flags, w.UID, w.Flags)
		}
	}
}

// findFile returns the path of the file in a Maildir's new/ or cur/ whose
// Subject is subj.
func findFile(t *testing.T, maildir, subj string) string {
	t.Helper()
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(maildir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			p := filepath.Join(maildir, sub, e.Name())
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(data), "\nSubject: "+subj+"\n") {
				return p
			}
		}
	}
	t.Fatalf("no file with Subject: %s in %s", subj, maildir)
	return ""
}

// dropFile writes a message into a Maildir as another delivery agent
// would: into tmp/, then renamed into new/ or cur/ under name.
func dropFile(t *testing.T, maildir, sub, name, content string) {
	t.Helper()
	tmp := filepath.Join(maildir, "tmp", name)
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(maildir, sub, name)); err != nil {
		t.Fatal(err)
	}
}

// withSeen returns a cur/ path for the file at p with the S flag added to
// its Maildir info, keeping the flags it had.
func withSeen(p string) string {
	base := filepath.Base(p)
	key, info, _ := strings.Cut(base, ":")
	letters := strings.TrimPrefix(info, "2,")
	if !strings.Contains(letters, "S") {
		b := []byte(letters + "S")
		slices.Sort(b)
		letters = string(b)
	}
	return filepath.Join(filepath.Dir(filepath.Dir(p)), "cur", key+":2,"+letters)
}

// TestIMAPMaildirChangedByHand changes a Maildir behind the server's back
// while it runs, as another MDA, mutt or a user with a shell would: a file
// dropped into new/, one into cur/ already seen, one deleted, one renamed
// to add the S flag. A session open on the folder learns of all of it at
// its next NOOP (EXPUNGE, EXISTS); a fresh session sees the new messages
// with new UIDs, not the deleted one, the flag change, and the other
// messages under their old UIDs. UIDs and UIDVALIDITY then survive a
// restart and a crash (SIGKILL); a lost index is rebuilt from the Maildir
// under a new UIDVALIDITY, keeping the flags that the file names hold.
func TestIMAPMaildirChangedByHand(t *testing.T) {
	t.Parallel()
	s := startIMAPServer(t, "", "alice@example.org")
	const user = "alice@example.org"
	md := s.maildir("example.org/alice")
	for i := 1; i <= 4; i++ {
		deliverLMTP(t, s.LMTP, "carol@example.net", user, fmt.Sprintf(
			"From: Carol <carol@example.net>\nTo: Alice <alice@example.org>\nSubject: hand %d\n"+
				"Message-ID: <hand-%d@example.net>\n\nmessage %d\n", i, i, i))
	}

	c1 := imapLogin(t, s.IMAP, user, nil)
	st1 := selectState(t, c1, "INBOX")
	if got := st1.subjects(); !slices.Equal(got, []string{"hand 1", "hand 2", "hand 3", "hand 4"}) {
		t.Fatalf("INBOX holds %q", got)
	}
	// Flags set over IMAP are in the file name, for mutt and Dovecot.
	if err := c1.Store(goimap.UIDSetNum(st1.Msgs["hand 2"].UID), &goimap.StoreFlags{
		Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagFlagged, goimap.FlagAnswered},
	}, nil).Close(); err != nil {
		t.Fatalf("UID STORE +FLAGS: %v", err)
	}
	if p := findFile(t, md, "hand 2"); !strings.HasSuffix(p, ":2,FR") || filepath.Base(filepath.Dir(p)) != "cur" {
		t.Errorf("after STORE +FLAGS (\\Flagged \\Answered) the file is %s, want cur/...:2,FR", p)
	}
	st1 = selectState(t, c1, "INBOX")
	if err := c1.Logout().Wait(); err != nil {
		t.Fatal(err)
	}

	// A session that stays on INBOX while the files change.
	var mu sync.Mutex
	var expunged []uint32
	watcher := imapLogin(t, s.IMAP, user, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) {
			mu.Lock()
			expunged = append(expunged, seq)
			mu.Unlock()
		},
	}})
	sameState(t, "the watching session", selectState(t, watcher, "INBOX"), st1)

	now := time.Now().Unix()
	const droppedNew = "From: Dave <dave@example.com>\nSubject: dropped in new\n\nput here by another MDA\n"
	const droppedCur = "From: Dave <dave@example.com>\nSubject: dropped in cur\n\nalready read elsewhere\n"
	// The dropped messages are written first: a session may scan the
	// directories at any moment.
	dropFile(t, md, "new", fmt.Sprintf("%d.M1P1.otherhost", now), droppedNew)
	dropFile(t, md, "cur", fmt.Sprintf("%d.M2P1.otherhost:2,S", now), droppedCur)
	if err := os.Remove(findFile(t, md, "hand 3")); err != nil {
		t.Fatal(err)
	}
	p4 := findFile(t, md, "hand 4")
	if err := os.Rename(p4, withSeen(p4)); err != nil {
		t.Fatal(err)
	}

	if err := watcher.Noop().Wait(); err != nil {
		t.Fatalf("NOOP: %v", err)
	}
	mu.Lock()
	if !slices.Equal(expunged, []uint32{3}) {
		t.Errorf("the watching session got EXPUNGE %v at NOOP, want [3] (hand 3, removed by hand)", expunged)
	}
	mu.Unlock()
	if mb := watcher.Mailbox(); mb == nil || mb.NumMessages != 5 {
		t.Errorf("the watching session's EXISTS after NOOP: %+v, want 5", mb)
	}

	c2 := imapLogin(t, s.IMAP, user, nil)
	st2 := selectState(t, c2, "INBOX")
	if got, want := st2.subjects(), []string{"dropped in cur", "dropped in new", "hand 1", "hand 2", "hand 4"}; !slices.Equal(got, want) {
		t.Fatalf("INBOX after the changes by hand holds %q, want %q", got, want)
	}
	if st2.UIDValidity != st1.UIDValidity {
		t.Errorf("UIDVALIDITY changed from %d to %d after files were added and removed", st1.UIDValidity, st2.UIDValidity)
	}
	for _, subj := range []string{"hand 1", "hand 2", "hand 4"} {
		if st2.Msgs[subj].UID != st1.Msgs[subj].UID {
			t.Errorf("%s: UID %d, was %d", subj, st2.Msgs[subj].UID, st1.Msgs[subj].UID)
		}
	}
	wantFlags := map[string][]string{
		"hand 1":         nil,
		"hand 2":         {`\Answered`, `\Flagged`},
		"hand 4":         {`\Seen`},
		"dropped in new": nil,
		"dropped in cur": {`\Seen`},
	}
	for subj, want := range wantFlags {
		if got := st2.Msgs[subj].Flags; !slices.Equal(got, want) {
			t.Errorf("%s: flags %q, want %q", subj, got, want)
		}
	}
	newUIDs := []goimap.UID{st2.Msgs["dropped in new"].UID, st2.Msgs["dropped in cur"].UID}
	for _, u := range newUIDs {
		if u < st1.UIDNext {
			t.Errorf("a dropped message got UID %d, below the UIDNEXT %d before it came", u, st1.UIDNext)
		}
	}
	if newUIDs[0] == newUIDs[1] {
		t.Errorf("both dropped messages have UID %d", newUIDs[0])
	}
	// What a dropped file serves is the file, in CRLF.
	msgs, err := c2.Fetch(goimap.UIDSetNum(newUIDs[0]), &goimap.FetchOptions{
		RFC822Size:  true,
		BodySection: []*goimap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("UID FETCH of the message dropped in new/: %v (%d messages)", err, len(msgs))
	}
	if got := string(msgs[0].FindBodySection(&goimap.FetchItemBodySection{})); got != crlf(droppedNew) {
		t.Errorf("BODY[] of the message dropped in new/: %q, want %q", got, crlf(droppedNew))
	}
	if msgs[0].RFC822Size != int64(len(crlf(droppedNew))) {
		t.Errorf("RFC822.SIZE of the message dropped in new/: %d, want %d", msgs[0].RFC822Size, len(crlf(droppedNew)))
	}
	c2.Logout().Wait()

	// Not subtests: each server must outlive the step that started it
	// (a subtest's cleanup would stop it before the next step kills it).
	s = s.restart(t, false)
	c := imapLogin(t, s.IMAP, user, nil)
	sameState(t, "after a restart", selectState(t, c, "INBOX"), st2)
	c.Logout().Wait()

	s = s.restart(t, true)
	c = imapLogin(t, s.IMAP, user, nil)
	sameState(t, "after SIGKILL and a start", selectState(t, c, "INBOX"), st2)
	c.Logout().Wait()

	s = s.loseIndex(t)
	c = imapLogin(t, s.IMAP, user, nil)
	st := selectState(t, c, "INBOX")
	t.Logf("UIDVALIDITY %d before the index was lost, %d after", st2.UIDValidity, st.UIDValidity)
	if st.UIDValidity == st2.UIDValidity {
		// Harmless only if every message kept its UID (RFC 9051 §2.3.1.1):
		// a client's cache under this UIDVALIDITY must still be right.
		for subj, old := range st2.Msgs {
			if nw, ok := st.Msgs[subj]; ok && nw.UID != old.UID {
				t.Errorf("the index was rebuilt under the same UIDVALIDITY %d, but %q moved from UID %d to %d: "+
					"a client's cached UIDs now name other messages", st.UIDValidity, subj, old.UID, nw.UID)
			}
		}
	}
	if !slices.Equal(st.subjects(), st2.subjects()) {
		t.Errorf("after rebuilding the index INBOX holds %q, want %q", st.subjects(), st2.subjects())
	}
	for subj, want := range wantFlags {
		if got := st.Msgs[subj].Flags; !slices.Equal(got, want) {
			t.Errorf("after rebuilding the index %s has flags %q, want %q (from its file name)", subj, got, want)
		}
	}
	c.Logout().Wait()
	s = s.restart(t, false)
	c = imapLogin(t, s.IMAP, user, nil)
	sameState(t, "a restart after the rebuild", selectState(t, c, "INBOX"), st)
}

// loseIndex stops the server, deletes the IMAP index from mailroom.db and
// starts the server again. The index is the top-level bucket "imap"
// (mailbox/maildir/index.go); the accounts are elsewhere.
func (s *imapServer) loseIndex(t *testing.T) *imapServer {
	t.Helper()
	s.Stop(t)
	db, err := bolt.Open(filepath.Join(s.DataDir, "mailroom.db"), 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("imap")) }); err != nil {
		db.Close()
		t.Fatalf("delete the imap bucket: %v", err)
	}
	db.Close()
	return s.restart(t, false)
}

// TestIMAPIndexRebuiltTwice loses the index, removes a message by hand,
// and loses the index again, so that the second rebuild numbers the same
// files differently. UIDVALIDITY is handed out from the clock, kept above
// the last one handed out; that record is lost with the index. The test
// opens folders in an order that makes the second rebuild reach INBOX's
// previous UIDVALIDITY again (the first rebuild opens 40 folders before
// INBOX, the second just enough to land on the same value, whatever the
// time a restart took). Under an unchanged UIDVALIDITY each message must
// keep its UID, or a client's cached UIDs name other messages.
func TestIMAPIndexRebuiltTwice(t *testing.T) {
	t.Parallel()
	s := startIMAPServer(t, "", "alice@example.org")
	const user = "alice@example.org"
	const folders = 40
	md := s.maildir("example.org/alice")
	for i := 1; i <= 4; i++ {
		deliverLMTP(t, s.LMTP, "carol@example.net", user, fmt.Sprintf(
			"From: Carol <carol@example.net>\nSubject: rebuild %d\nMessage-ID: <rebuild-%d@example.net>\n\nmessage %d\n", i, i, i))
	}
	c := imapLogin(t, s.IMAP, user, nil)
	for i := 1; i <= folders; i++ {
		if err := c.Create(fmt.Sprintf("f%02d", i), nil).Wait(); err != nil {
			t.Fatalf("CREATE f%02d: %v", i, err)
		}
	}
	c.Logout().Wait()
	uidValidity := func(c *imapclient.Client, name string) uint32 {
		t.Helper()
		st, err := c.Status(name, &goimap.StatusOptions{UIDValidity: true}).Wait()
		if err != nil {
			t.Fatalf("STATUS %s: %v", name, err)
		}
		return st.UIDValidity
	}

	s = s.loseIndex(t)
	c = imapLogin(t, s.IMAP, user, nil)
	for i := 1; i <= folders; i++ {
		uidValidity(c, fmt.Sprintf("f%02d", i))
	}
	before := selectState(t, c, "INBOX")
	c.Logout().Wait()

	lowest := ""
	for subj, m := range before.Msgs {
		if lowest == "" || m.UID < before.Msgs[lowest].UID {
			lowest = subj
		}
	}
	if err := os.Remove(findFile(t, md, lowest)); err != nil {
		t.Fatal(err)
	}

	s = s.loseIndex(t)
	c = imapLogin(t, s.IMAP, user, nil)
	// Open folders until the next one handed out would be INBOX's old
	// UIDVALIDITY (or the supply of folders ends).
	for i := 1; i <= folders; i++ {
		if v := uidValidity(c, fmt.Sprintf("f%02d", i)); v+1 >= before.UIDValidity {
			break
		}
	}
	after := selectState(t, c, "INBOX")
	c.Logout().Wait()
	t.Logf("INBOX's UIDVALIDITY: %d after the first rebuild, %d after the second", before.UIDValidity, after.UIDValidity)
	if after.UIDValidity != before.UIDValidity {
		return
	}
	for subj, old := range before.Msgs {
		if nw, ok := after.Msgs[subj]; ok && nw.UID != old.UID {
			t.Errorf("the index was rebuilt under the same UIDVALIDITY %d, but %q moved from UID %d to %d: "+
				"a client's cached UIDs now name other messages", after.UIDValidity, subj, old.UID, nw.UID)
		}
	}
}
