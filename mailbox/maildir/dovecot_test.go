package maildir

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailroom/mailbox"
)

// TestDovecotImport: a Maildir copied from Dovecot keeps its UIDVALIDITY,
// UIDs and keywords, once.
func TestDovecotImport(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	md := e.md(testHome)
	for _, d := range []string{"cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp"} {
		os.MkdirAll(filepath.Join(md, d), 0o700)
	}
	write := func(p, s string) {
		if err := os.WriteFile(filepath.Join(md, p), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("cur/1600000000.M1P1.old,S=4,W=5:2,Sa", "one\n")
	write("cur/1600000001.M2P1.old,S=4,W=5:2,RSb", "two\n")
	write("new/1600000002.M3P1.old,S=6,W=7", "three\n")
	write("new/1700000000.M9P9.later", "after dovecot\n") // not in the uidlist
	write("dovecot-uidlist", "3 V1234567 N50 G0123456789abcdef\n"+
		"7 W5 :1600000000.M1P1.old,S=4,W=5\n"+
		"12 :1600000001.M2P1.old,S=4,W=5\n"+
		"40 W7 S6 :1600000002.M3P1.old,S=6,W=7\n"+
		"45 :1500000000.gone\n")
	write("dovecot-keywords", "0 $Forwarded\n1 Work\nbad line\n")
	write(".Sent/dovecot-uidlist", "1 999 3\n1 1600000005.sent\n")
	write(".Sent/cur/1600000005.sent:2,S", "sent\n")

	f := e.folders(testHome)
	s := mustSync(t, f, "INBOX")
	if s.UIDValidity != 1234567 || !slices.Equal(uidsOf(s), []uint32{7, 12, 40, 50}) || s.UIDNext != 51 {
		t.Fatalf("imported INBOX: %+v", s)
	}
	if got := s.Messages[0].Flags; !slices.Equal(got, []string{"$Forwarded", `\Seen`}) {
		t.Errorf("uid 7 flags %v", got)
	}
	if got := s.Messages[1].Flags; !slices.Equal(got, []string{"Work", `\Answered`, `\Seen`}) {
		t.Errorf("uid 12 flags %v", got)
	}
	if sent := mustSync(t, f, "Sent"); sent.UIDValidity != 999 || !slices.Equal(uidsOf(sent), []uint32{1}) {
		t.Errorf("imported Sent (version 1 uidlist): %+v", sent)
	}
	if _, err := os.Stat(filepath.Join(md, "dovecot-uidlist"+importedSuffix)); err != nil {
		t.Errorf("uidlist not retired: %v", err)
	}
	// Index lost later: no second import, a new UIDVALIDITY.
	e.close()
	db, _ := bolt.Open(e.dbPath, 0o600, nil)
	db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(tree.Name()) })
	db.Close()
	e.open()
	if s2 := mustSync(t, e.folders(testHome), "INBOX"); s2.UIDValidity == s.UIDValidity || len(s2.Messages) != 4 {
		t.Errorf("after losing the index: %+v", s2)
	}
}

func TestParseUIDList(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		ok   bool
		uids int
	}{
		{"3 V1 N5\n1 :a\n4 W3 :b:2,S\n", true, 2},
		{"1 7 3\n1 a\n2 b\n", true, 2},
		{"3 V1 N5\n2 :a\n1 :b\n", false, 0}, // not ascending
		{"3 V1 N5\n5 :a\n", false, 0},       // not below next
		{"3 V1 N5\n1 :a\n2 :a\n", false, 0}, // twice
		{"3 N5\n1 :a\n", false, 0},          // no UIDVALIDITY
		{"2 V1 N5\n", false, 0},             // unknown version
		{"3 V1 N5\n1 a\n", false, 0},        // no ":"
		{"3 V1 N5\n1 :a/b\n", false, 0},     // a path
		{"", false, 0},
	} {
		l, err := parseUIDList(strings.NewReader(c.in))
		if (err == nil) != c.ok || (err == nil && len(l.uids) != c.uids) {
			t.Errorf("parseUIDList(%q) = %+v, %v", c.in, l, err)
		}
	}
}

func FuzzParseUIDList(f *testing.F) {
	f.Add("3 V1234 N50 G00\n7 W5 :1600000000.M1P1.old,S=4,W=5\n12 :x:2,S\n")
	f.Add("1 7 3\n1 a\n2 b\n")
	f.Fuzz(func(t *testing.T, in string) {
		l, err := parseUIDList(strings.NewReader(in))
		if err != nil {
			return
		}
		if l.uidValidity == 0 || l.uidNext == 0 {
			t.Fatalf("%+v", l)
		}
		for k, uid := range l.uids {
			if uid == 0 || uid >= l.uidNext || strings.ContainsAny(k, "/\x00:") {
				t.Fatalf("%q -> %d in %+v", k, uid, l)
			}
		}
		parseKeywords(strings.NewReader(in))
	})
}

// TestDovecotExport: the uidlist written for Dovecot holds each folder's
// UIDVALIDITY, next UID and every message's UID (gaps of expunged ones
// kept); read back after the index is lost, as Dovecot reads it, it gives
// the same UIDs.
func TestDovecotExport(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	for i := range 4 {
		e.deliver(testHome, fmt.Sprintf("Subject: %d\n\nbody\n", i))
	}
	f := e.folders(testHome)
	ctx := t.Context()
	before := mustSync(t, f, "INBOX")
	if _, err := f.Expunge(ctx, "INBOX", []uint32{before.Messages[1].UID}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Append(ctx, "Archive", strings.NewReader("Subject: kept\r\n\r\nx\r\n"), []string{`\Seen`}, time.Now()); err != nil {
		t.Fatal(err)
	}
	e.deliver(testHome, "Subject: late\n\nnot yet synced\n") // the export syncs first
	folders, messages, err := e.ix.ExportDovecot(ctx, testHome)
	if err != nil {
		t.Fatal(err)
	}
	inbox, archive := mustSync(t, f, "INBOX"), mustSync(t, f, "Archive")
	if len(inbox.Messages) != 4 || messages != len(inbox.Messages)+len(archive.Messages) || folders < 2 {
		t.Fatalf("export: %d folders, %d messages; INBOX %d, Archive %d", folders, messages, len(inbox.Messages), len(archive.Messages))
	}
	for _, c := range []struct {
		dir  string
		snap *mailbox.Snapshot
	}{{"", inbox}, {".Archive", archive}} {
		b, err := os.ReadFile(filepath.Join(e.md(testHome), c.dir, "dovecot-uidlist"))
		if err != nil {
			t.Fatal(err)
		}
		l, err := parseUIDList(strings.NewReader(string(b)))
		if err != nil {
			t.Fatalf("%s: the exported uidlist does not parse: %v\n%s", c.dir, err, b)
		}
		var uids []uint32
		for _, u := range l.uids {
			uids = append(uids, u)
		}
		slices.Sort(uids)
		if l.uidValidity != c.snap.UIDValidity || l.uidNext != c.snap.UIDNext || !slices.Equal(uids, uidsOf(c.snap)) {
			t.Errorf("%s: uidlist V%d N%d %v, want V%d N%d %v", c.dir, l.uidValidity, l.uidNext, uids, c.snap.UIDValidity, c.snap.UIDNext, uidsOf(c.snap))
		}
	}

	// The index lost: the next one takes the exported UIDs, as Dovecot
	// would.
	e.close()
	db, _ := bolt.Open(e.dbPath, 0o600, nil)
	db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(tree.Name()) })
	db.Close()
	e.open()
	again := mustSync(t, e.folders(testHome), "INBOX")
	if again.UIDValidity != inbox.UIDValidity || !slices.Equal(uidsOf(again), uidsOf(inbox)) || again.UIDNext != inbox.UIDNext {
		t.Errorf("read back: V%d %v N%d, want V%d %v N%d", again.UIDValidity, uidsOf(again), again.UIDNext, inbox.UIDValidity, uidsOf(inbox), inbox.UIDNext)
	}
}

// TestRenewUIDValidity: after a restore, every folder gets a UIDVALIDITY
// larger than any before and keeps its messages, UIDs, flags and
// keywords; a folder made afterwards gets a larger one still.
func TestRenewUIDValidity(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	for i := range 3 {
		e.deliver(testHome, fmt.Sprintf("Subject: %d\n\nbody\n", i))
	}
	f := e.folders(testHome)
	ctx := t.Context()
	inbox := mustSync(t, f, "INBOX")
	if _, err := f.SetFlags(ctx, "INBOX", []uint32{inbox.Messages[0].UID}, mailbox.FlagsAdd, []string{`\Flagged`, "$Work"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Append(ctx, "Archive", strings.NewReader("Subject: a\r\n\r\nx\r\n"), []string{`\Seen`}, time.Now()); err != nil {
		t.Fatal(err)
	}
	before := map[string]*mailbox.Snapshot{"INBOX": mustSync(t, f, "INBOX"), "Archive": mustSync(t, f, "Archive")}
	e.close()
	db, err := bolt.Open(e.dbPath, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := RenewUIDValidity(db)
	db.Close()
	if err != nil || n < 2 {
		t.Fatalf("RenewUIDValidity: %d folders, %v", n, err)
	}
	e.open()
	f = e.folders(testHome)
	highest := uint32(0)
	for name, b := range before {
		a := mustSync(t, f, name)
		if a.UIDValidity <= b.UIDValidity || !slices.Equal(uidsOf(a), uidsOf(b)) || a.UIDNext != b.UIDNext {
			t.Errorf("%s: V%d %v N%d, want a larger UIDVALIDITY than %d and the UIDs %v N%d", name, a.UIDValidity, uidsOf(a), a.UIDNext, b.UIDValidity, uidsOf(b), b.UIDNext)
		}
		for i, m := range a.Messages {
			if !slices.Equal(m.Flags, b.Messages[i].Flags) {
				t.Errorf("%s UID %d: flags %v, were %v", name, m.UID, m.Flags, b.Messages[i].Flags)
			}
		}
		highest = max(highest, a.UIDValidity)
	}
	if err := f.Create(ctx, "Later"); err != nil {
		t.Fatal(err)
	}
	if later := mustSync(t, f, "Later"); later.UIDValidity <= highest {
		t.Errorf("a folder made after the renewal: UIDVALIDITY %d, not above %d", later.UIDValidity, highest)
	}
}
