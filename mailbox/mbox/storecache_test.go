package mbox

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mailroom/internal/mailtest"
	"mailroom/mailbox"
)

// TestHeaderCache: entries are served back to every session of the
// account, go with their messages (an EXPUNGE here; a resync after
// another program's rewrite drops them the same way, in apply), are not
// served for a UID before the folder is loaded, and stay within
// maxCacheBytes.
func TestHeaderCache(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, StoreOptions{})
	for i := range 3 {
		deliver(t, s, "", fmt.Sprintf("Subject: m%d\n\nbody\n", i))
	}
	f := openFolders(t, s)
	hc, ok := f.(mailbox.HeaderCache)
	if !ok {
		t.Fatal("the mbox store's Folders is not a mailbox.HeaderCache")
	}
	hc.CacheFields("INBOX", 1, []byte("Subject: early\r\n")) // not loaded: dropped
	uids := snapUIDs(mustSync(t, f, "INBOX"))
	if got, _ := hc.CachedFields(t.Context(), "INBOX", uids); len(got) != 0 {
		t.Fatalf("an entry given before the folder was loaded is served: %v", got)
	}
	for i, u := range uids {
		hc.CacheFields("INBOX", u, []byte(fmt.Sprintf("Subject: m%d\r\n", i)))
	}
	other := openFolders(t, s).(mailbox.HeaderCache)
	got, err := other.CachedFields(t.Context(), "INBOX", append(uids, 99))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || string(got[uids[1]]) != "Subject: m1\r\n" {
		t.Fatalf("another session reads %v", got)
	}
	if _, err := f.Expunge(t.Context(), "INBOX", uids[1:2]); err != nil {
		t.Fatal(err)
	}
	if got, _ := hc.CachedFields(t.Context(), "INBOX", uids); len(got) != 2 || got[uids[1]] != nil {
		t.Errorf("after the expunge of %d: %v", uids[1], got)
	}

	big := make([]byte, 1<<20)
	for u := uint32(1000); u < 1000+2*maxCacheBytes>>20; u++ {
		hc.CacheFields("INBOX", u, big)
	}
	if n := s.cacheBytes.Load(); n > maxCacheBytes || n < maxCacheBytes/2 {
		t.Errorf("the caches hold %d bytes, bound %d", n, maxCacheBytes)
	}
	if got, _ := hc.CachedFields(t.Context(), "INBOX", uids[:1]); string(got[uids[0]]) != "Subject: m0\r\n" {
		t.Errorf("an entry went when the cache filled: %v", got)
	}
}

// TestSharedReads: message reads share one descriptor of the file, which
// is let go readIdle after the last read; a file rewritten in place by
// another program (same inode, bytes moved) is noticed by the next Open
// without a Sync, which serves each UID its own message.
func TestSharedReads(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, StoreOptions{})
	for i := range 3 {
		deliver(t, s, "", fmt.Sprintf("Subject: m%d\n\nbody %d\n", i, i))
	}
	f := openFolders(t, s)
	uids := snapUIDs(mustSync(t, f, "INBOX"))
	for i, u := range uids {
		if c := content(t, f, "INBOX", u); !strings.HasSuffix(c, fmt.Sprintf("body %d\r\n", i)) {
			t.Fatalf("UID %d reads %q", u, c)
		}
	}
	fo, err := f.(*session).a.folder("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	held := func() bool {
		fo.readers.mu.Lock()
		defer fo.readers.mu.Unlock()
		return fo.readers.h != nil
	}
	if !held() {
		t.Fatal("no shared descriptor after the reads")
	}
	mailtest.Eventually(t, 3*readIdle, "the idle descriptor let go", func() bool { return !held() })

	// Another program drops m0 in place, as mutt does (same inode).
	content(t, f, "INBOX", uids[2]) // the shared descriptor in use again
	p := filepath.Join(s.opts.Root, testHome, "mbox")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	second := strings.Index(string(raw), "\nFrom ") + 1
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(raw[second:], 0); err != nil {
		t.Fatal(err)
	}
	w.Truncate(int64(len(raw) - second))
	w.Close()
	for i, u := range uids[1:] {
		if c := content(t, f, "INBOX", u); !strings.HasSuffix(c, fmt.Sprintf("body %d\r\n", i+1)) {
			t.Errorf("after the rewrite in place UID %d reads %q", u, c)
		}
	}
	if got := snapUIDs(mustSync(t, f, "INBOX")); !slices.Equal(got, uids[1:]) {
		t.Errorf("UIDs %v, want %v", got, uids[1:])
	}
}
