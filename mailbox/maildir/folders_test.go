package maildir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mailroom/mailbox"
)

func listNames(t *testing.T, f mailbox.Folders) []string {
	t.Helper()
	l, err := f.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, x := range l {
		out = append(out, x.Name)
	}
	return out
}

func TestCreateDelete(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	ctx := context.Background()
	for _, c := range []struct {
		name string
		err  error
	}{
		{"Archive/2024", nil},
		{"a/b/c", nil},
		{"Entwürfe/日本", nil},
		{"INBOX/Sub", nil},
		{"Archive/2024", mailbox.ErrFolderExists},
		{"inbox", mailbox.ErrFolderExists},
		{"Sent", mailbox.ErrFolderExists},
	} {
		if err := f.Create(ctx, c.name); !errors.Is(err, c.err) && !(err == nil && c.err == nil) {
			t.Errorf("Create(%q) = %v, want %v", c.name, err, c.err)
		}
	}
	want := []string{"INBOX", "INBOX/Sub", "Archive", "Archive/2024", "Drafts", "Entwürfe", "Entwürfe/日本", "Junk", "Sent", "Trash", "a", "a/b", "a/b/c"}
	if got := listNames(t, f); !slices.Equal(got, want) {
		t.Errorf("List = %q\nwant %q", got, want)
	}
	for _, d := range []string{".Archive.2024", ".a.b.c", ".Entw&APw-rfe.&ZeVnLA-", ".INBOX.Sub"} {
		if _, err := os.Stat(filepath.Join(e.md(testHome), d, "cur")); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}

	// Delete drops messages and index, keeps children and the
	// subscription; made again, the folder has a new UIDVALIDITY.
	f.Append(ctx, "a/b", strings.NewReader("x\n"), nil, time.Time{})
	s1 := mustSync(t, f, "a/b")
	f.SetSubscribed(ctx, "a/b", true)
	w := f.Watch("a/b")
	if err := f.Delete(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w:
	default:
		t.Error("Watch not closed by Delete")
	}
	if _, err := f.Sync(ctx, "a/b"); !errors.Is(err, mailbox.ErrNoFolder) {
		t.Errorf("Sync of a deleted folder: %v", err)
	}
	if got := listNames(t, f); slices.Contains(got, "a/b") || !slices.Contains(got, "a/b/c") {
		t.Errorf("after Delete: %q", got)
	}
	if err := f.Create(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	if s2 := mustSync(t, f, "a/b"); s2.UIDValidity == s1.UIDValidity || len(s2.Messages) != 0 || s2.UIDNext != 1 {
		t.Errorf("re-created folder: %+v, old %+v", s2, s1)
	}
	l, _ := f.List(ctx)
	for _, x := range l {
		if x.Name == "a/b" && !x.Subscribed {
			t.Error("Delete dropped the subscription")
		}
	}
	for _, c := range []struct {
		name string
		err  error
	}{
		{"INBOX", mailbox.ErrNotAllowed},
		{"nope", mailbox.ErrNoFolder},
		{"a/../..", mailbox.ErrBadFolderName},
	} {
		if err := f.Delete(ctx, c.name); !errors.Is(err, c.err) {
			t.Errorf("Delete(%q) = %v, want %v", c.name, err, c.err)
		}
	}
}

func TestSubscriptions(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	ctx := context.Background()
	sub := func() map[string]bool {
		l, _ := f.List(ctx)
		m := map[string]bool{}
		for _, x := range l {
			m[x.Name] = x.Subscribed
		}
		return m
	}
	if err := f.SetSubscribed(ctx, "Sent", false); err != nil {
		t.Fatal(err)
	}
	f.Create(ctx, "New")
	f.SetSubscribed(ctx, "New", true)
	if err := f.SetSubscribed(ctx, "Not/There", true); err != nil {
		t.Errorf("subscribing a missing folder: %v", err)
	}
	e.reopen()
	f = e.folders(testHome)
	if m := sub(); m["Sent"] || !m["New"] || !m["INBOX"] || !m["Trash"] {
		t.Errorf("subscriptions after restart: %v", m)
	}
	if err := f.SetSubscribed(ctx, "a//b", true); !errors.Is(err, mailbox.ErrBadFolderName) {
		t.Errorf("SetSubscribed(bad) = %v", err)
	}
}

func TestRename(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	ctx := context.Background()
	for _, n := range []string{"Archive/2024", "Archive/2024/Q1", "Archive2"} {
		if err := f.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	f.Append(ctx, "Archive", strings.NewReader("a\n"), []string{`\Seen`, "kw"}, time.Time{})
	f.Append(ctx, "Archive/2024/Q1", strings.NewReader("q\n"), nil, time.Time{})
	sArch := mustSync(t, f, "Archive")
	sQ1 := mustSync(t, f, "Archive/2024/Q1")
	f.SetSubscribed(ctx, "Archive/2024", true)

	if err := f.Rename(ctx, "Archive", "Old/Stuff"); err != nil {
		t.Fatal(err)
	}
	want := []string{"INBOX", "Archive2", "Drafts", "Junk", "Old", "Old/Stuff", "Old/Stuff/2024", "Old/Stuff/2024/Q1", "Sent", "Trash"}
	if got := listNames(t, f); !slices.Equal(got, want) {
		t.Fatalf("after Rename: %q\nwant %q", got, want)
	}
	s := mustSync(t, f, "Old/Stuff")
	if s.UIDValidity != sArch.UIDValidity || !slices.Equal(uidsOf(s), uidsOf(sArch)) || !slices.Equal(s.Messages[0].Flags, []string{`\Seen`, "kw"}) {
		t.Errorf("renamed folder: %+v, before %+v", s, sArch)
	}
	if s := mustSync(t, f, "Old/Stuff/2024/Q1"); s.UIDValidity != sQ1.UIDValidity || len(s.Messages) != 1 {
		t.Errorf("renamed child: %+v", s)
	}
	if got := readMsg(t, f, "Old/Stuff/2024/Q1", 1); got != "q\r\n" {
		t.Errorf("content %q", got)
	}
	l, _ := f.List(ctx)
	for _, x := range l {
		switch x.Name {
		case "Old/Stuff":
			if x.SpecialUse != `\Archive` || !x.Subscribed {
				t.Errorf("special use/subscription not moved: %+v", x)
			}
		case "Old/Stuff/2024":
			if !x.Subscribed {
				t.Errorf("child's subscription not moved: %+v", x)
			}
		}
	}
	if _, err := f.Sync(ctx, "Archive"); !errors.Is(err, mailbox.ErrNoFolder) {
		t.Errorf("old name still there: %v", err)
	}
	// A new folder under the old name is a new folder.
	f.Create(ctx, "Archive")
	if s := mustSync(t, f, "Archive"); s.UIDValidity == sArch.UIDValidity || len(s.Messages) != 0 {
		t.Errorf("new folder under the old name: %+v", s)
	}
	// Survives a restart.
	e.reopen()
	f = e.folders(testHome)
	if s := mustSync(t, f, "Old/Stuff"); s.UIDValidity != sArch.UIDValidity || len(s.Messages) != 1 {
		t.Errorf("after restart: %+v", s)
	}

	for _, c := range []struct {
		from, to string
		err      error
	}{
		{"Old", "Old/Stuff/x", mailbox.ErrNotAllowed},
		{"Old", "Sent", mailbox.ErrFolderExists},
		{"Old", "INBOX", mailbox.ErrFolderExists},
		{"Nope", "Other", mailbox.ErrNoFolder},
		{"Old", "../x", mailbox.ErrBadFolderName},
		{"a.b", "x", mailbox.ErrBadFolderName},
	} {
		if err := f.Rename(ctx, c.from, c.to); !errors.Is(err, c.err) {
			t.Errorf("Rename(%q, %q) = %v, want %v", c.from, c.to, err, c.err)
		}
	}
}

func TestRenameInbox(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	ctx := context.Background()
	e.deliver(testHome, "one\n")
	e.deliver(testHome, "two\n")
	f.Create(ctx, "INBOX/Child")
	before := mustSync(t, f, "INBOX")
	f.SetFlags(ctx, "INBOX", []uint32{2}, mailbox.FlagsAdd, []string{`\Flagged`})
	if err := f.Rename(ctx, "INBOX", "Old Mail"); err != nil {
		t.Fatal(err)
	}
	in := mustSync(t, f, "INBOX")
	if len(in.Messages) != 0 || in.UIDValidity != before.UIDValidity || in.UIDNext != 3 {
		t.Errorf("INBOX after rename: %+v", in)
	}
	old := mustSync(t, f, "Old Mail")
	if len(old.Messages) != 2 || !slices.Equal(old.Messages[1].Flags, []string{`\Flagged`}) {
		t.Errorf("moved messages: %+v", old)
	}
	if got := listNames(t, f); !slices.Contains(got, "INBOX/Child") || !slices.Contains(got, "Old Mail") {
		t.Errorf("List %q", got)
	}
	e.deliver(testHome, "three\n")
	if in := mustSync(t, f, "INBOX"); !slices.Equal(uidsOf(in), []uint32{3}) {
		t.Errorf("delivery after rename: %v", uidsOf(in))
	}
}

// TestBadNames: every method refuses unsafe names with ErrBadFolderName,
// and nothing is made outside the mail home.
func TestBadNames(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	ctx := context.Background()
	// A trap: a symlink from a folder name to outside the home.
	outside := t.TempDir()
	os.Symlink(outside, filepath.Join(e.md(testHome), ".Trap"))
	ops := map[string]func(name string) error{
		"Create":     func(n string) error { return f.Create(ctx, n) },
		"Delete":     func(n string) error { return f.Delete(ctx, n) },
		"Rename":     func(n string) error { return f.Rename(ctx, "Sent", n) },
		"RenameFrom": func(n string) error { return f.Rename(ctx, n, "Elsewhere") },
		"Subscribe":  func(n string) error { return f.SetSubscribed(ctx, n, true) },
		"Sync":       func(n string) error { _, err := f.Sync(ctx, n); return err },
		"Append": func(n string) error {
			_, _, err := f.Append(ctx, n, strings.NewReader("x\n"), nil, time.Time{})
			return err
		},
		"Open": func(n string) error { _, _, err := f.Open(ctx, n, 1); return err },
		"SetFlags": func(n string) error {
			_, err := f.SetFlags(ctx, n, []uint32{1}, mailbox.FlagsAdd, []string{`\Seen`})
			return err
		},
		"Expunge": func(n string) error { _, err := f.Expunge(ctx, n, []uint32{1}); return err },
		"Copy":    func(n string) error { _, _, _, err := f.Copy(ctx, "INBOX", []uint32{1}, n); return err },
		"Move":    func(n string) error { _, _, _, err := f.Move(ctx, "INBOX", []uint32{1}, n); return err },
	}
	e.deliver(testHome, "x\n")
	for op, fn := range ops {
		for _, name := range badFolderNames {
			if err := fn(name); !errors.Is(err, mailbox.ErrBadFolderName) {
				t.Errorf("%s(%q) = %v, want ErrBadFolderName", op, name, err)
			}
		}
	}
	if f.Watch("../x") != nil {
		t.Error("Watch of a bad name returned a channel that may close")
	}
	// The trap folder: its directory is a symlink out of the home.
	if _, _, err := f.Append(ctx, "Trap", strings.NewReader("x\n"), nil, time.Time{}); err == nil {
		t.Error("Append through a symlink out of the home succeeded")
	}
	if err := f.Create(ctx, "Trap/Sub"); err == nil {
		if _, err := os.Stat(filepath.Join(outside, "cur")); err == nil {
			t.Error("Create made directories through a symlink out of the home")
		}
	}
	ents, _ := os.ReadDir(outside)
	if len(ents) != 0 {
		t.Errorf("files made outside the home: %v", ents)
	}
	// Another account's Maildir, inside the mail root, linked as a
	// folder: still outside this home.
	bob := e.folders("example.org/bob")
	e.deliver("example.org/bob", "bob's mail\n")
	os.Symlink("../../bob/Maildir", filepath.Join(e.md(testHome), ".Bob"))
	os.Symlink("../../bob/Maildir/new", filepath.Join(e.md(testHome), ".Bob2"))
	for _, n := range []string{"Bob", "Bob2"} {
		if s, err := f.Sync(ctx, n); err == nil {
			t.Errorf("Sync of a folder linked to another account: %+v", s)
		}
		if _, _, err := f.Append(ctx, n, strings.NewReader("x\n"), nil, time.Time{}); err == nil {
			t.Errorf("Append to a folder linked to another account succeeded")
		}
		if _, _, err := f.Open(ctx, n, 1); err == nil {
			t.Errorf("Open in a folder linked to another account succeeded")
		}
	}
	if s := mustSync(t, bob, "INBOX"); len(s.Messages) != 1 {
		t.Errorf("bob's INBOX: %+v", s)
	}
	// A message file that is a symlink (to bob's mail) is not served.
	bobNew := filepath.Join(e.md("example.org/bob"), "new")
	os.Symlink(filepath.Join(bobNew, files(t, bobNew)[0]), filepath.Join(e.md(testHome), "cur", "1.link:2,"))
	for _, m := range mustSync(t, f, "INBOX").Messages {
		if got := readMsg(t, f, "INBOX", m.UID); strings.Contains(got, "bob") {
			t.Errorf("served another account's message through a symlink")
		}
	}
	home := filepath.Join(e.root, testHome)
	filepath.WalkDir(filepath.Dir(e.root), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(p, home+"/") && !strings.HasSuffix(p, "mailroom.db") &&
			!strings.Contains(p, "/bob/Maildir/") {
			t.Errorf("file outside the home: %s", p)
		}
		return nil
	})
}

func TestMissingFoldersKeepNoState(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	for i := range 100 {
		if _, err := f.Sync(context.Background(), fmt.Sprintf("nope%d", i)); !errors.Is(err, mailbox.ErrNoFolder) {
			t.Fatal(err)
		}
	}
	n := len(e.ix.accts.Lookup(testHome).folders.All())
	if n > 1 {
		t.Errorf("%d folder states kept after syncing missing folders", n)
	}
}
