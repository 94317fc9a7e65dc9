package mailtest

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// Messages returns the contents of the files in a mail home's Maildir
// new/ ("example.org/alice"), sorted by file name, which is delivery order
// for files mailroom wrote (the seconds and zero-padded microseconds lead).
func Messages(t testing.TB, mailRoot, home string) []string {
	t.Helper()
	return FolderMessages(t, mailRoot, home, "")
}

// FolderMessages is Messages for the Maildir++ folder directory folder
// (".Junk"); "" is INBOX.
func FolderMessages(t testing.TB, mailRoot, home, folder string) []string {
	t.Helper()
	dir := filepath.Join(mailRoot, home, "Maildir", folder, "new")
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	var out []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// TmpFiles counts files left in a mail home's Maildir tmp/.
func TmpFiles(t testing.TB, mailRoot, home string) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(mailRoot, home, "Maildir", "tmp"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return len(entries)
}
