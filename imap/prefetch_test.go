package imap

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/mailbox"
)

// syncSpy is a Store that reports each Sync of a folder on a channel.
type syncSpy struct {
	Store
	synced chan string // "home/folder"
}

type spyFolders struct {
	mailbox.Folders
	home string
	spy  *syncSpy
}

func (s *syncSpy) Open(ctx context.Context, home string) (Folders, error) {
	f, err := s.Store.Open(ctx, home)
	if err != nil {
		return nil, err
	}
	return &spyFolders{f, home, s}, nil
}

func (f *spyFolders) Sync(ctx context.Context, name string) (*mailbox.Snapshot, error) {
	snap, err := f.Folders.Sync(ctx, name)
	select {
	case f.spy.synced <- f.home + "/" + name:
	default:
	}
	return snap, err
}

// TestLoginPrefetchesInbox: while LOGIN checks the password, the account's
// INBOX is read through the Store (the check here waits until it has
// been, and would time out without the read ahead); an unknown account
// and an address the throttle holds back read nothing.
func TestLoginPrefetchesInbox(t *testing.T) {
	t.Parallel()
	spy := &syncSpy{synced: make(chan string, 16)}
	var (
		mu    sync.Mutex
		finds []string
	)
	auth := AuthenticatorFunc(func(ctx context.Context, user, pass string) (string, error) {
		if user == "alice" && pass == "secret" {
			// The password check, slow as bcrypt: done when INBOX was read.
			select {
			case got := <-spy.synced:
				if got != "alice/INBOX" {
					t.Errorf("read ahead %q, want alice/INBOX", got)
				}
			case <-time.After(10 * time.Second):
				t.Error("INBOX was not read while the password was checked")
			}
		}
		return testAuth{}.Authenticate(ctx, user, pass)
	})
	ts := start(t, Options{
		Store:            spy,
		Auth:             auth,
		AuthFailureDelay: time.Minute,
		prefetchOneCPU:   true,
		FindHome: func(ctx context.Context, user string) (string, bool) {
			mu.Lock()
			finds = append(finds, user)
			mu.Unlock()
			return user, user == "alice" || user == "bob"
		},
	})
	spy.Store = ts.store
	ts.deliver(t, "INBOX", "Subject: hi\r\n\r\nhello\r\n")

	r := dialRaw(t, ts.addr)
	r.login()
	r.ok("SELECT INBOX")

	// No account: nothing is opened.
	n := dialRaw(t, ts.addr)
	if _, st := n.cmd("LOGIN nobody secret"); !strings.HasPrefix(st, "NO") {
		t.Fatalf("LOGIN of no account: %q", st)
	}
	// Held back by the throttle after two failures: not even looked up.
	b := dialRaw(t, ts.addr)
	for range 2 {
		b.cmd("LOGIN bob wrong")
	}
	mu.Lock()
	before := len(finds)
	mu.Unlock()
	if _, st := b.cmd("LOGIN bob secret"); !strings.HasPrefix(st, "NO [UNAVAILABLE]") {
		t.Fatalf("throttled LOGIN: %q", st)
	}
	ts.srv.Close() // waits for the reads ahead under way
	mu.Lock()
	defer mu.Unlock()
	if len(finds) != before {
		t.Errorf("a throttled login looked up %q", finds[before:])
	}
	close(spy.synced)
	for got := range spy.synced {
		if strings.HasPrefix(got, "nobody/") {
			t.Errorf("read %q for a login of no account", got)
		}
	}
}
