package imap

// Reading an account's INBOX while its password is checked.

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// HomeFinder names the mail home of a login name without a look at the
// password (ok false: no such account). It lets the server start
// reading the account's INBOX while the password is checked (see
// prefetcher).
type HomeFinder func(ctx context.Context, username string) (home string, ok bool)

// prefetcher reads an account's INBOX through the Store while its login
// checks the password. A bcrypt comparison takes about 50 ms of one CPU,
// and the first SELECT of a large INBOX after a restart (or of one with
// no index yet) loads or builds its index, tens of milliseconds to
// seconds, on the same connection after it: on a machine with a second
// CPU the two can overlap, and the client's LOGIN+SELECT takes about the
// longer of them rather than their sum. LOGIN's answer waits for a read
// still under way (awaitPrefetch), and the session's SELECT then finds
// the folder loaded.
//
// The read happens before the login succeeds, so that an unauthenticated
// client can cause it: it is only done for an existing account, from an
// address the failed-login throttle lets through, once at a time per
// account, at most maxPrefetches at once (more are skipped, not queued),
// and it is the read that the account's own first SELECT would make;
// a loaded folder stays loaded, so repeated attempts cost a scan of an
// unchanged folder. It makes the default folders of an account that has
// never been opened, as its first login or delivery would. That the
// account exists is no secret kept by the timing of LOGIN (an MX tells
// it in its answer to RCPT), and with one CPU, where the read would slow
// the password check, nothing is read ahead.
type prefetcher struct {
	on       bool // FindHome is set, and there are CPUs to overlap on
	mu       sync.Mutex
	closed   bool
	inFlight map[string]chan struct{} // by home; closed when done
	wg       sync.WaitGroup
}

// maxPrefetches bounds the INBOX reads under way at once; prefetchTime
// bounds each one.
const (
	maxPrefetches = 2
	prefetchTime  = 30 * time.Second
)

// prefetch starts reading the INBOX of username's account, if it has
// one, and returns at once.
func (s *Server) prefetch(username string) {
	if !s.prefetches.on {
		return
	}
	home, ok := s.opts.FindHome(s.ctx, username)
	if !ok {
		return
	}
	p := &s.prefetches
	p.mu.Lock()
	if p.closed || p.inFlight[home] != nil || len(p.inFlight) >= maxPrefetches {
		p.mu.Unlock()
		return
	}
	if p.inFlight == nil {
		p.inFlight = map[string]chan struct{}{}
	}
	done := make(chan struct{})
	p.inFlight[home] = done
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		defer func() {
			p.mu.Lock()
			delete(p.inFlight, home)
			p.mu.Unlock()
			close(done)
		}()
		defer s.opts.Panics.Recover(s.log, "imap INBOX prefetch")
		ctx, cancel := context.WithTimeout(s.ctx, prefetchTime)
		defer cancel()
		start := time.Now()
		f, err := s.opts.Store.Open(ctx, home)
		if err == nil {
			_, err = f.Sync(ctx, "INBOX")
			f.Close()
		}
		if err != nil {
			// The session's own SELECT meets the same error and
			// answers it; this is only a head start.
			s.log.Debug("INBOX prefetch failed", "home", home, "err", err)
			return
		}
		s.log.Debug("INBOX prefetched", "home", home, "took", time.Since(start).Round(time.Microsecond))
	}()
}

// awaitPrefetch waits for the read ahead of home under way, if any, or
// until ctx ends. A login waits for it before it answers, so that the
// client's first view is as fresh as its own read would have made it: a
// Sync that meets another session's index commit still pending is shown
// the folder's last durable snapshot (maildir's group commit), without
// the mail that the read ahead's scan found.
func (p *prefetcher) awaitPrefetch(ctx context.Context, home string) {
	p.mu.Lock()
	done := p.inFlight[home]
	p.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// prefetchOn reports whether a server with opts reads INBOX ahead: with
// one CPU the read would only slow the password check.
func prefetchOn(opts *Options) bool {
	return opts.FindHome != nil && (runtime.GOMAXPROCS(0) >= 2 || opts.prefetchOneCPU)
}

// wait refuses further prefetches and waits for those under way, which
// read the store that the caller closes next.
func (p *prefetcher) wait() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
}
