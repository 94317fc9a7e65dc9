// Package panics counts and logs the panics that mailroom recovers, so
// that none goes unseen: those the protocol libraries recover and report
// through their loggers (go-smtp's ErrorLog, go-imap's imapserver Logger),
// those of our own goroutines (queue workers, control handlers), and those
// of calls guarded against a library that may panic on bad input (message
// parsing). A recovered panic is a bug that a client can trigger: each is
// logged at Error with event=panic and its stack, and counted, so that
// tests fail on one (a TestMain checks Recorder.Count) and metrics can
// show them. It knows nothing of protocols.
package panics

import (
	"bytes"
	"context"
	"fmt"
	stdlog "log"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// Recorder counts the panics recovered in the servers it is given to.
// The zero value is ready to use; a nil *Recorder logs but counts nothing.
type Recorder struct {
	n  atomic.Int64
	mu sync.Mutex
	// first keeps the first few panics, for a test run's summary.
	first []string
}

// keep is how many panics a Recorder keeps for First.
const keep = 10

// Count is the number of panics recorded.
func (r *Recorder) Count() int64 {
	if r == nil {
		return 0
	}
	return r.n.Load()
}

// First returns the first panics recorded (up to ten), each with its
// stack, for a test's failure message.
func (r *Recorder) First() []string {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.first...)
}

// Record logs and counts v, a value recover returned. It must be called
// from the deferred function that recovered, so that the stack it logs
// is the one that panicked. where names what was running ("queue
// worker", "FETCH").
func (r *Recorder) Record(log *slog.Logger, where string, v any) {
	r.add(log, where, fmt.Sprint(v), debug.Stack())
}

// Recover recovers a panic and records it: defer r.Recover(log, where) at
// the top of a goroutine that must not take the process down with it.
func (r *Recorder) Recover(log *slog.Logger, where string) {
	if v := recover(); v != nil {
		r.Record(log, where, v)
	}
}

func (r *Recorder) add(log *slog.Logger, where, value string, stack []byte) {
	log.Error("recovered panic", "event", "panic", "where", where, "panic", value, "stack", string(stack))
	if r == nil {
		return
	}
	r.n.Add(1)
	r.mu.Lock()
	if len(r.first) < keep {
		r.first = append(r.first, fmt.Sprintf("panic in %s: %s\n%s", where, value, stack))
	}
	r.mu.Unlock()
}

// LibraryLogger returns a Printf logger for a protocol library that
// recovers panics itself and reports each through its logger with a
// message that starts with one of prefixes (the library's own wording,
// pinned by a test where the library is used). Those are counted and
// logged at Error as Record does (the message holds the library's stack);
// any other message is logged at level.
func (r *Recorder) LibraryLogger(log *slog.Logger, level slog.Level, where string, prefixes ...string) *stdlog.Logger {
	return stdlog.New(&libWriter{r: r, log: log, level: level, where: where, prefixes: prefixes}, "", 0)
}

type libWriter struct {
	r        *Recorder
	log      *slog.Logger
	level    slog.Level
	where    string
	prefixes []string
}

// Write receives one formatted message per call (log.Logger writes each
// Printf in one Write).
func (w *libWriter) Write(p []byte) (int, error) {
	msg := bytes.TrimRight(p, "\n")
	for _, pre := range w.prefixes {
		if bytes.HasPrefix(msg, []byte(pre)) {
			value, stack, _ := bytes.Cut(msg[len(pre):], []byte("\n"))
			w.r.add(w.log, w.where, string(value), stack)
			return len(p), nil
		}
	}
	w.log.Log(context.Background(), w.level, string(msg))
	return len(p), nil
}
