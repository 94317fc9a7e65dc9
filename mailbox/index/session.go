package index

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// ErrClosed is the error of a call on a store's mailbox.Folders after its
// Close.
var ErrClosed = errors.New("mailbox: folders closed")

// Session is what one IMAP session's handle on an account (a store's
// mailbox.Folders) keeps of its own: whether it was closed. Everything
// else is in the account's state shared by all its sessions, so that a
// session costs a few words. Embed it; the zero value is open.
type Session struct{ closed atomic.Bool }

// Check returns ErrClosed after Close, else ctx's error, so that every
// call starts with one test.
func (s *Session) Check(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

// Closed reports whether Close was called.
func (s *Session) Closed() bool { return s.closed.Load() }

// Close ends the session's use of the account; the shared state stays
// for the next session.
func (s *Session) Close() error {
	s.closed.Store(true)
	return nil
}

// LockTwo locks the mutexes of two folders (or of one, given twice) in the
// order of their names, so that two sessions copying between the same
// folders in opposite directions cannot deadlock, and returns what
// unlocks them.
func LockTwo(a *sync.Mutex, aName string, b *sync.Mutex, bName string) (unlock func()) {
	if a == b {
		a.Lock()
		return a.Unlock
	}
	if bName < aName {
		a, b = b, a
	}
	a.Lock()
	b.Lock()
	return func() {
		b.Unlock()
		a.Unlock()
	}
}
