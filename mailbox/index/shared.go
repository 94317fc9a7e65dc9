package index

import (
	"fmt"
	"path"
	"strings"
	"sync"
)

// Folder is a folder every account has, with its special use.
type Folder struct{ Name, Use string }

// DefaultFolders are made, subscribed, for a new account besides INBOX,
// in every format (Dovecot's "auto = subscribe" mailboxes alike). Each
// call returns a new slice.
func DefaultFolders() []Folder {
	return []Folder{{"Sent", `\Sent`}, {"Drafts", `\Drafts`}, {"Trash", `\Trash`}, {"Junk", `\Junk`}, {"Archive", `\Archive`}}
}

// IsDefaultFolder reports whether name is one of DefaultFolders, which a
// delivery may make when missing (Sieve's fileinto "Junk" before the
// account's first IMAP session).
func IsDefaultFolder(name string) bool {
	for _, d := range DefaultFolders() {
		if d.Name == name {
			return true
		}
	}
	return false
}

// DefaultFolderOf names the default folder of special use use, or "".
func DefaultFolderOf(use string) string {
	for _, d := range DefaultFolders() {
		if strings.EqualFold(d.Use, use) {
			return d.Name
		}
	}
	return ""
}

// CheckHome refuses mail home names that are not plain relative paths
// below the mail root (opening beneath the root would stop an escape
// anyway; this gives a clear error first).
func CheckHome(home string) error {
	if home == "" || path.IsAbs(home) || path.Clean(home) != home || strings.HasPrefix(home, "..") ||
		strings.ContainsAny(home, "\x00\\") {
		return fmt.Errorf("invalid mail home %q", home)
	}
	for _, elem := range strings.Split(home, "/") {
		if elem == ".." || elem == "." || strings.HasPrefix(elem, ".") {
			return fmt.Errorf("invalid mail home %q", home)
		}
	}
	return nil
}

// Dedupe returns uids without repeats, in their first order (a STORE or
// COPY may name a message twice).
func Dedupe(uids []uint32) []uint32 {
	seen := make(map[uint32]bool, len(uids))
	out := make([]uint32, 0, len(uids))
	for _, u := range uids {
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}

// Watcher is what mailbox.Folders.Watch hands out for one folder: a
// channel closed at the folder's next change. The zero value is ready.
type Watcher struct {
	mu sync.Mutex
	ch chan struct{}
}

// Watch returns the channel the next Notify closes.
func (w *Watcher) Watch() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

// Notify wakes the watchers; it never blocks on them.
func (w *Watcher) Notify() {
	w.mu.Lock()
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
	w.mu.Unlock()
}
