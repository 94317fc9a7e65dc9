package maildir

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/internal/mailtest"
	"mailroom/mailbox"
)

// writeGate is an IndexOptions.writeHook that tests arm: armed, the next
// index write signals entered and waits for release, then fails with
// the error sent (nil lets it through).
type writeGate struct {
	mu      sync.Mutex
	armed   bool
	entered chan struct{}
	release chan error
}

func newWriteGate() *writeGate {
	return &writeGate{entered: make(chan struct{}, 1), release: make(chan error, 1)}
}

func (g *writeGate) arm() {
	g.mu.Lock()
	g.armed = true
	g.mu.Unlock()
}

func (g *writeGate) hook() error {
	g.mu.Lock()
	armed := g.armed
	g.armed = false
	g.mu.Unlock()
	if !armed {
		return nil
	}
	g.entered <- struct{}{}
	return <-g.release
}

// gatedEnv is an indexEnv whose index writes pass through a writeGate.
func gatedEnv(t *testing.T) (*indexEnv, *writeGate) {
	t.Helper()
	g := newWriteGate()
	dir := t.TempDir()
	e := &indexEnv{t: t, root: filepath.Join(dir, "mail"), dbPath: filepath.Join(dir, "mailroom.db")}
	e.opts.writeHook = g.hook
	e.open()
	t.Cleanup(e.close)
	return e, g
}

// inBackground runs fn in a goroutine and returns its error on a channel.
func inBackground(fn func() error) <-chan error {
	c := make(chan error, 1)
	go func() { c <- fn() }()
	return c
}

func receive(t *testing.T, c <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no answer in 10 s", what)
		return nil
	}
}

func hasFlag(s *mailbox.Snapshot, uid uint32, flag string) bool {
	for _, m := range s.Messages {
		if m.UID == uid {
			return slices.Contains(m.Flags, flag)
		}
	}
	return false
}

// TestChangeShownOnceDurable: while a session's change is being written,
// the session waits, and other sessions are shown the folder as it was
// (without waiting); once written, watchers are woken and everyone sees
// it.
func TestChangeShownOnceDurable(t *testing.T) {
	t.Parallel()
	e, g := gatedEnv(t)
	ctx := context.Background()
	a, b := e.folders(testHome), e.folders(testHome)
	_, uid, err := a.Append(ctx, inbox, strings.NewReader("Subject: x\r\n\r\nx\r\n"), nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	before := mustSync(t, b, inbox)

	g.arm()
	store := inBackground(func() error {
		_, err := a.SetFlags(ctx, inbox, []uint32{uid}, mailbox.FlagsAdd, []string{"$Held"})
		return err
	})
	<-g.entered
	changed := b.Watch(inbox) // as IDLE does: watch, then sync
	synced := inBackground(func() error {
		s, err := b.Sync(ctx, inbox)
		if err == nil && (hasFlag(s, uid, "$Held") || s.HighestModSeq != before.HighestModSeq) {
			err = fmt.Errorf("shown a change not yet written: %+v", s.Messages)
		}
		return err
	})
	if err := receive(t, synced, "Sync while another session's write is held"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-store:
		t.Fatalf("SetFlags answered (%v) before its write was durable", err)
	case <-changed:
		t.Fatal("watchers woken before the change was durable")
	default:
	}
	g.release <- nil
	if err := receive(t, store, "SetFlags"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("watchers not woken once the change was durable")
	}
	if s := mustSync(t, b, inbox); !hasFlag(s, uid, "$Held") {
		t.Errorf("after the write: %+v", s.Messages)
	}
}

// TestWriteFailure: an index write that fails fails its command, takes
// back a failed APPEND's file, refuses a change queued behind it, and the
// folder is read again from what is durable.
func TestWriteFailure(t *testing.T) {
	t.Parallel()
	e, g := gatedEnv(t)
	ctx := context.Background()
	a, b := e.folders(testHome), e.folders(testHome)
	_, uid, err := a.Append(ctx, inbox, strings.NewReader("Subject: kept\r\n\r\nx\r\n"), nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cur := filepath.Join(e.md(testHome), "cur")

	// A failed APPEND leaves no file and no message.
	g.arm()
	appended := inBackground(func() error {
		_, _, err := a.Append(ctx, inbox, strings.NewReader("Subject: lost\r\n\r\nx\r\n"), nil, time.Time{})
		return err
	})
	<-g.entered
	g.release <- errors.New("disk on fire")
	if err := receive(t, appended, "Append"); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Append with a failing write: %v", err)
	}
	if n := len(files(t, cur)); n != 1 {
		t.Errorf("cur/ holds %d files after a failed APPEND, want 1", n)
	}
	if s := mustSync(t, b, inbox); !slices.Equal(uidsOf(s), []uint32{uid}) {
		t.Errorf("after a failed APPEND: UIDs %v, want [%d]", uidsOf(s), uid)
	}

	// A change queued behind a failing write fails too, as it was made
	// on the failed one's state; neither is seen afterwards.
	g.arm()
	first := inBackground(func() error {
		_, err := a.SetFlags(ctx, inbox, []uint32{uid}, mailbox.FlagsAdd, []string{"$First"})
		return err
	})
	<-g.entered
	second := inBackground(func() error {
		_, err := b.SetFlags(ctx, inbox, []uint32{uid}, mailbox.FlagsAdd, []string{"$Second"})
		return err
	})
	mailtest.Eventually(t, 10*time.Second, "the second change to be queued", func() bool {
		c := e.ix.commits
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.queue) == 1
	})
	g.release <- errors.New("disk on fire")
	if err := receive(t, first, "first SetFlags"); err == nil {
		t.Error("SetFlags with a failing write succeeded")
	}
	if err := receive(t, second, "second SetFlags"); !errors.Is(err, errEarlierWrite) {
		t.Errorf("SetFlags queued behind a failed write: %v, want errEarlierWrite", err)
	}
	s := mustSync(t, b, inbox)
	if hasFlag(s, uid, "$First") || hasFlag(s, uid, "$Second") || !slices.Equal(uidsOf(s), []uint32{uid}) {
		t.Errorf("after failed writes: %+v", s.Messages)
	}

	// Writes work again, and what they wrote survives a restart.
	if _, err := a.SetFlags(ctx, inbox, []uint32{uid}, mailbox.FlagsAdd, []string{"$Third"}); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	if s := mustSync(t, e.folders(testHome), inbox); !hasFlag(s, uid, "$Third") || hasFlag(s, uid, "$First") {
		t.Errorf("after a restart: %+v", s.Messages)
	}
}

// TestConcurrentChangesDurable: many sessions changing one folder at once
// (their writes grouped into shared transactions) each find their change
// in bbolt when their call returns.
func TestConcurrentChangesDurable(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	ctx := context.Background()
	e.folders(testHome) // the account
	const sessions, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, sessions*each)
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := e.folders(testHome)
			for j := range each {
				_, uid, err := f.Append(ctx, inbox, strings.NewReader(fmt.Sprintf("Subject: %d.%d\r\n\r\nx\r\n", i, j)), nil, time.Time{})
				if err == nil {
					kw := fmt.Sprintf("k%d_%d", i, j)
					_, err = f.SetFlags(ctx, inbox, []uint32{uid}, mailbox.FlagsAdd, []string{kw})
					if err == nil {
						err = e.stored(uid, kw)
					}
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// stored checks that bbolt holds uid in INBOX with keyword kw.
func (e *indexEnv) stored(uid uint32, kw string) error {
	a := e.ix.accts.Lookup(testHome)
	f := &folder{a: a, name: inbox, dir: a.md}
	st, bad, err := f.readIndex(false)
	if err != nil || bad != nil || st == nil {
		return fmt.Errorf("read index: %v, %v", err, bad)
	}
	for _, ent := range st.ents {
		if ent.uid == uid {
			if !slices.Contains(ent.kws, kw) {
				return fmt.Errorf("uid %d stored with keywords %v, want %s", uid, ent.kws, kw)
			}
			return nil
		}
	}
	return fmt.Errorf("uid %d not in the index when SetFlags returned", uid)
}

// TestFirstScanShownOnceDurable: while one session's first scan of a
// folder that has no index yet is being written, another session's Sync
// waits for it instead of being shown the index rebuilt empty (a client
// then saw an empty INBOX until its next NOOP: imap's read ahead at
// LOGIN made that the common case).
func TestFirstScanShownOnceDurable(t *testing.T) {
	t.Parallel()
	e, g := gatedEnv(t)
	for i := range 3 {
		e.deliver(testHome, fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i))
	}
	a, b := e.folders(testHome), e.folders(testHome)
	g.arm()
	first := inBackground(func() error { _, err := a.Sync(t.Context(), inbox); return err })
	<-g.entered
	var seen int
	second := inBackground(func() error {
		s, err := b.Sync(t.Context(), inbox)
		if err == nil {
			seen = len(s.Messages)
		}
		return err
	})
	g.release <- nil
	if err := receive(t, first, "first scan"); err != nil {
		t.Fatal(err)
	}
	if err := receive(t, second, "Sync beside the first scan"); err != nil {
		t.Fatal(err)
	}
	if seen != 3 {
		t.Errorf("a Sync beside the folder's first scan showed %d messages, want 3", seen)
	}
}
