// Package dbcheck decides whether mailroom.db may be opened, and salvages
// what it can of one that may not.
//
// bbolt trusts its file. A page overwritten or cut short makes it panic
// ("invalid freelist page") or touch memory past the end of the mapping,
// which is a fatal error that recover cannot catch when it happens in the
// goroutine tx.Check starts; pages that point at each other make it descend
// for ever. So every read of a file not yet known to be sound happens in a
// child process (the mailroom binary itself, started again with an
// environment variable that Main recognises), whose death is a verdict
// rather than the end of the command. The parent never maps a damaged file.
//
// The package knows nothing of what the buckets mean: mailroom's commands
// decide what an empty database or a lost bucket implies.
package dbcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Options say how to run the child process.
type Options struct {
	// Exe is the program started as the child; it must call Main before
	// anything else (the mailroom binary does, and so must the TestMain of
	// a test binary that calls Check). Default: os.Executable().
	Exe string
	// LockWait is how long the child waits for the file lock (another
	// process holds it exclusively while it has the database open).
	// Default one second.
	LockWait time.Duration
	// Timeout bounds one check. Default ten minutes.
	Timeout time.Duration
}

func (o Options) exe() (string, error) {
	if o.Exe != "" {
		return o.Exe, nil
	}
	return os.Executable()
}

// ErrLocked means another process has the database open: it cannot be
// checked now (and the caller cannot open it either).
var ErrLocked = errors.New("database is locked by another process")

// DamageError says a file is not a sound bbolt database.
type DamageError struct {
	Path   string
	Reason string
}

func (e *DamageError) Error() string { return fmt.Sprintf("%s is damaged: %s", e.Path, e.Reason) }

// Info is what a sound file holds.
type Info struct {
	// Buckets maps each top-level bucket to the number of keys directly
	// in it (its sub-buckets count as keys).
	Buckets map[string]int `json:"buckets"`
	// Size is the file's size in bytes.
	Size int64 `json:"size"`
}

// request is what the parent sends the child on its standard input.
type request struct {
	Op       string        `json:"op"` // "check", "dump" or "probe"
	Path     string        `json:"path"`
	LockWait time.Duration `json:"lock_wait"`
	// Resume is where a dump goes on from (see position).
	Resume [][]byte `json:"resume,omitempty"`
	// Inclusive makes a dump go on from the last key of Resume rather
	// than after it.
	Inclusive bool `json:"inclusive,omitempty"`
	// Flush makes the child flush after every record, so that a crash
	// loses nothing it read.
	Flush bool `json:"flush,omitempty"`
}

// Exit statuses of the child.
const (
	childOK      = 0
	childLocked  = 3
	childDamaged = 4
	childMissing = 5
	childMemory  = 6
)

// Check reports whether the file at path is a sound bbolt database: every
// page reachable, no page both used and free, every key and value
// readable. It returns a *DamageError if not, ErrLocked if another process
// holds it, and an error wrapping fs.ErrNotExist if there is no file.
func Check(ctx context.Context, path string, opts Options) (Info, error) {
	if opts.LockWait <= 0 {
		opts.LockWait = time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	var out bytes.Buffer
	res, err := runChild(ctx, opts, request{Op: "check", Path: path, LockWait: opts.LockWait}, &out)
	if err != nil {
		return Info{}, err
	}
	switch res.code {
	case childOK:
		var info Info
		if err := json.Unmarshal(out.Bytes(), &info); err != nil {
			return Info{}, fmt.Errorf("check %s: bad answer from the checking process: %w", path, err)
		}
		return info, nil
	case childLocked:
		return Info{}, fmt.Errorf("%s: %w", path, ErrLocked)
	case childMissing:
		return Info{}, fmt.Errorf("%s: %w", path, os.ErrNotExist)
	case childDamaged:
		return Info{}, &DamageError{Path: path, Reason: oneLine(out.String())}
	}
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return Info{}, &DamageError{Path: path, Reason: fmt.Sprintf("the check did not finish within %s (pages in a loop?)", opts.Timeout)}
		}
		return Info{}, ctx.Err()
	}
	return Info{}, &DamageError{Path: path, Reason: res.reason()}
}

type childResult struct {
	code   int // -1: killed by a signal
	stderr string
}

// reason picks the line of a dead child's stderr that says why it died.
func (r childResult) reason() string {
	if r.code == childMemory {
		return "reading it took more memory than any sound database needs (pages in a loop?)"
	}
	for _, l := range strings.Split(r.stderr, "\n") {
		for _, p := range []string{"fatal error:", "panic:", "unexpected fault address", "runtime: "} {
			if strings.HasPrefix(l, p) {
				return "reading it crashed the checking process (" + strings.TrimSpace(l) + ")"
			}
		}
	}
	if l := oneLine(r.stderr); l != "" {
		return fmt.Sprintf("the checking process failed (exit %d: %s)", r.code, l)
	}
	return fmt.Sprintf("the checking process failed (exit %d)", r.code)
}

// runChild starts the child with req on its stdin, copies its stdout to
// out and waits for it. An error means it could not be run at all.
func runChild(ctx context.Context, opts Options, req request, out io.Writer) (childResult, error) {
	exe, err := opts.exe()
	if err != nil {
		return childResult{}, fmt.Errorf("find the mailroom binary to check %s with: %w", req.Path, err)
	}
	in, err := json.Marshal(req)
	if err != nil {
		return childResult{}, err
	}
	cmd := exec.CommandContext(ctx, exe)
	// A race-enabled child (a test binary) would otherwise sleep a second
	// at exit, waiting for reports from goroutines it does not have.
	cmd.Env = append(os.Environ(), envChild+"=1", "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stdout = out
	var stderr limitedBuffer
	stderr.max = 64 << 10
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return childResult{code: 0}, nil
	case errors.As(err, &ee):
		return childResult{code: ee.ExitCode(), stderr: stderr.String()}, nil
	}
	return childResult{}, fmt.Errorf("run %s to check %s: %w", exe, req.Path, err)
}

// oneLine is the first non-empty line of s.
func oneLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
