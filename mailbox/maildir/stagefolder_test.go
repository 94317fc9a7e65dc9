package maildir

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mailroom/mailbox"
)

// TestStageFolder delivers as Sieve's fileinto does: into a folder that
// must exist unless :create, with flags and keywords that IMAP then
// shows, durably (the keywords in dovecot-keywords, so that a restart or
// Dovecot reading the Maildir keeps them).
func TestStageFolder(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	ctx := context.Background()
	deliver := func(d mailbox.Delivery) error {
		t.Helper()
		st, err := e.store.StageFolder(ctx, testHome, d, strings.NewReader("Subject: x\n\nbody\n"))
		if err != nil {
			return err
		}
		return st.Commit(ctx)
	}
	if err := deliver(mailbox.Delivery{Folder: "Lists/go"}); !errors.Is(err, mailbox.ErrNoFolder) {
		t.Fatalf("into a missing folder without Create: %v, want ErrNoFolder", err)
	}
	if ok, _ := e.store.FolderExists(ctx, testHome, "Lists/go"); ok {
		t.Fatal("FolderExists before the folder was made")
	}
	// The folders every account has are there before the first IMAP
	// session has made them.
	if ok, _ := e.store.FolderExists(ctx, "example.org/fresh", "Junk"); !ok {
		t.Error("FolderExists(Junk) false for a new account")
	}
	st, err := e.store.StageFolder(ctx, "example.org/fresh", mailbox.Delivery{Folder: "Archive"}, strings.NewReader("x\n"))
	if err != nil {
		t.Fatalf("into Archive of a new account: %v", err)
	}
	if err := st.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := deliver(mailbox.Delivery{Folder: "Lists/go", Create: true, Flags: []string{`\Seen`, "$label1", "Work", `\Recent`}}); err != nil {
		t.Fatal(err)
	}
	if err := deliver(mailbox.Delivery{Folder: "lists/go"}); !errors.Is(err, mailbox.ErrNoFolder) {
		t.Errorf("folder names are case-sensitive below INBOX: %v", err)
	}
	if err := deliver(mailbox.Delivery{Folder: "Lists/go", Flags: []string{"Work", "Other"}}); err != nil {
		t.Fatal(err)
	}
	if err := deliver(mailbox.Delivery{Folder: "INBOX", Flags: []string{`\Flagged`}}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Lists/go", "INBOX", "inbox"} {
		if ok, err := e.store.FolderExists(ctx, testHome, name); !ok || err != nil {
			t.Errorf("FolderExists(%q) = %v, %v", name, ok, err)
		}
	}
	if _, err := e.store.StageFolder(ctx, testHome, mailbox.Delivery{Folder: "../x", Create: true}, strings.NewReader("x\n")); !errors.Is(err, mailbox.ErrBadFolderName) {
		t.Errorf("a folder name with ..: %v", err)
	}
	kw, err := os.ReadFile(filepath.Join(e.root, testHome, "Maildir", ".Lists.go", "dovecot-keywords"))
	if err != nil || string(kw) != "0 $label1\n1 Work\n2 Other\n" {
		t.Errorf("dovecot-keywords %q, %v", kw, err)
	}
	check := func() {
		t.Helper()
		f := e.folders(testHome)
		snap, err := f.Sync(ctx, "Lists/go")
		if err != nil {
			t.Fatal(err)
		}
		var got [][]string
		for _, m := range snap.Messages {
			got = append(got, m.Flags)
		}
		want := [][]string{{"$label1", "Work", `\Seen`}, {"Other", "Work"}}
		if len(got) != 2 || !slices.Equal(got[0], want[0]) || !slices.Equal(got[1], want[1]) {
			t.Errorf("Lists/go flags %q, want %q", got, want)
		}
		snap, err = f.Sync(ctx, "INBOX")
		if err != nil || len(snap.Messages) != 1 || !slices.Equal(snap.Messages[0].Flags, []string{`\Flagged`}) {
			t.Errorf("INBOX %+v, %v", snap, err)
		}
		list, _ := f.List(ctx)
		var names []string
		for _, l := range list {
			names = append(names, l.Name)
		}
		if !slices.Contains(names, "Lists/go") {
			t.Errorf("LIST %q lacks the folder made by the delivery", names)
		}
	}
	check()
	// The keywords survive a lost index: they are in the files' names.
	e.close()
	os.Remove(e.dbPath)
	e.open()
	check()
}
