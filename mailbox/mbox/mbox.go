// Package mbox appends messages to mbox files the way Postfix local(8)
// and procmail do, so that mutt, Dovecot, mail(1) and formail read them
// while mailroom writes.
//
// Format: mboxrd. Each message starts with "From sender asctime-date",
// any body line matching ^>*From  gets one more '>' (so the quoting can be
// undone exactly, unlike mboxo), line ends are LF, and every message ends
// with an empty line.
//
// Locking: both a dotlock (<mbox>.lock, created with O_EXCL) and an fcntl
// write lock on the file. Readers differ in which one they honour: mutt,
// procmail and mail(1) rely on dotlocks, Dovecot and Postfix take fcntl
// locks (Dovecot's default mbox_write_locks is "dotlock fcntl"), so a
// writer must hold both to be safe against every reader. The dotlock is
// taken first, as Postfix and procmail do; one LockTimeout bounds the
// wait for both.
//
// Durability and atomicity: the appended data is fsynced before Append
// returns nil; on any failure the file is truncated back to the size it
// had when the locks were taken, and fsynced, so no half message remains
// for a reader to see after the locks are dropped.
//
// The package knows nothing of recipients, aliases or configuration: the
// caller decides which path to write, and whether the path is allowed.
package mbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults for Options.
const (
	DefaultLockTimeout = 30 * time.Second
	DefaultStaleLock   = 5 * time.Minute
)

// Options configure Append.
type Options struct {
	// LockTimeout bounds the wait for the dotlock and the fcntl lock
	// together (default 30s). Running out is a temporary error, so the
	// message is retried later rather than bounced.
	LockTimeout time.Duration
	// StaleLock is the age beyond which a dotlock is taken to be left by
	// a crashed writer and removed (default 5 minutes, the value of
	// procmail and liblockfile).
	StaleLock time.Duration
	// Logger receives Debug records about lock waits and a Warn record
	// when a stale dotlock is broken; nil discards them.
	Logger *slog.Logger
	// Root, if set, confines the mbox to a directory tree (a user's mail
	// home, for a file target in their .forward): the path given to
	// Append is then relative to Root (filepath.IsLocal), the directories
	// on the way are resolved inside Root, and the mbox and its dotlock
	// are opened in their directory without following a symbolic link
	// out of it. A path that would leave Root is ErrOutside.
	Root *os.Root
	// Order is the order the two locks are taken in (DotlockFirst by
	// default).
	Order LockOrder
}

func (o Options) withDefaults() Options {
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.StaleLock <= 0 {
		o.StaleLock = DefaultStaleLock
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Errors that Append wraps; test for them with errors.Is.
var (
	// ErrLockTimeout is an mbox that another process held for
	// LockTimeout.
	ErrLockTimeout = errors.New("mailbox is locked by another process")
	// ErrRelative is a path that is not absolute; file targets are always
	// given in full, so a relative one is a configuration mistake.
	ErrRelative = errors.New("path is not absolute")
	// ErrSymlink is an mbox that is a symbolic link. It is refused (O_NOFOLLOW)
	// so that a link planted by a user cannot redirect mail into another
	// file; Postfix's safe_open refuses it too.
	ErrSymlink = errors.New("is a symbolic link")
	// ErrNotRegular is a path that names a directory, device, FIFO or
	// socket.
	ErrNotRegular = errors.New("is not a regular file")
	// ErrOutside is, with Options.Root, a path that is not a local path
	// inside the root (absolute, or with ".." leading out).
	ErrOutside = errors.New("is outside the directory it is confined to")
	// ErrUnsafe is a regular file that must not be appended to: executable
	// (Postfix refuses those, "file is executable") or with more than one
	// hard link (a link to another user's file).
	ErrUnsafe = errors.New("is not safe to append to")
)

// Error is a failed Append. Temporary tells the caller whether to retry
// (defer) or bounce.
type Error struct {
	Path string
	Op   string // the step that failed: "lock", "open", "write", ...
	Err  error
	temp bool
}

func (e *Error) Error() string {
	return fmt.Sprintf("append to mbox %s: %s: %v", e.Path, e.Op, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether a later attempt may succeed. It is false for
// the file's own faults that do not go away by waiting: a relative path,
// a symlink, something other than a regular file, an executable or
// hard-linked file, and a missing directory (ENOENT, ENOTDIR: a mistyped
// path, bounced as Postfix does). Everything else is temporary: a lock
// held too long, a full disk (ENOSPC, EDQUOT), an I/O error, a read-only
// file system, permission problems an administrator can fix, a message
// source that failed to read, a cancelled context.
func (e *Error) Temporary() bool { return e.temp }

func newError(path, op string, err error) *Error {
	return &Error{Path: path, Op: op, Err: err, temp: temporary(err)}
}

func temporary(err error) bool {
	for _, perm := range []error{ErrRelative, ErrOutside, ErrSymlink, ErrNotRegular, ErrUnsafe, unix.ENOENT, unix.ENOTDIR, unix.ELOOP, unix.EISDIR} {
		if errors.Is(err, perm) {
			return false
		}
	}
	return true
}

// Append adds one message to the mbox at path, creating the file with
// mode 0600 if it is missing. from is the envelope sender ("" for the null
// sender, written as MAILER-DAEMON), date the delivery time (zero: now).
// r is the message with LF or CRLF line ends; it is stored with LF. The
// returned error is an *Error (see Temporary) or nil once the message is
// on disk, fsynced.
//
// "/dev/null" is accepted and discards the message without reading it,
// as sendmail and Postfix do for the common "nobody: /dev/null" alias.
//
// O_NOFOLLOW covers the last path component only; directories on the way
// are followed, so the caller confines paths it does not trust, with
// Options.Root.
func Append(ctx context.Context, path, from string, date time.Time, r io.Reader, opts Options) error {
	opts = opts.withDefaults()
	var fsys dirFS = osFS{}
	name := path
	if opts.Root != nil {
		shown := filepath.Join(opts.Root.Name(), path)
		if !filepath.IsLocal(path) || strings.IndexByte(path, 0) >= 0 {
			return newError(shown, "check path", ErrOutside)
		}
		// The mbox's own directory, resolved inside Root; the mbox and
		// its dotlock are then looked up in it alone, so that a symlink
		// in their place can lead nowhere else.
		dir, err := opts.Root.OpenRoot(filepath.Dir(path))
		if err != nil {
			if escapes(err) {
				err = fmt.Errorf("%w: %w", ErrOutside, err)
			}
			return newError(shown, "open directory", err)
		}
		defer dir.Close()
		fsys, name, path = dir, filepath.Base(path), shown
	} else {
		if !filepath.IsAbs(path) || strings.IndexByte(path, 0) >= 0 {
			return newError(path, "check path", ErrRelative)
		}
		if path == os.DevNull {
			return nil
		}
	}
	if date.IsZero() {
		date = time.Now()
	}

	h, err := lockMbox(ctx, fsys, name, path, opts)
	if err != nil {
		return err
	}
	defer h.release()
	n, _, err := h.appendMany(ctx, []outMessage{{from: fromLine(from, date), r: r}})
	if err != nil {
		return newError(path, "write", err)
	}
	opts.Logger.Debug("mbox append", "mbox", path, "bytes", n)
	return nil
}

// LockOrder is the order in which a writer takes an mbox's two locks.
type LockOrder int

const (
	// DotlockFirst takes the dotlock, then the fcntl lock: Postfix's,
	// procmail's and Dovecot's default order ("dotlock fcntl").
	DotlockFirst LockOrder = iota
	// FcntlFirst takes the fcntl lock first, for sites whose other tools
	// do so. Every writer of a file must use the same order: one holding
	// the fcntl lock and waiting for the dotlock while another holds the
	// dotlock and waits for the fcntl lock wait for each other until one
	// times out, and no mail gets through meanwhile.
	FcntlFirst
)

// ParseLockOrder reads a lock order as Dovecot's mbox_write_locks spells
// it: "dotlock fcntl" (the default, also for "") or "fcntl dotlock".
func ParseLockOrder(s string) (LockOrder, error) {
	switch strings.Join(strings.Fields(s), " ") {
	case "", "dotlock fcntl":
		return DotlockFirst, nil
	case "fcntl dotlock":
		return FcntlFirst, nil
	}
	return 0, fmt.Errorf("mbox lock order %q: write \"dotlock fcntl\" or \"fcntl dotlock\"", s)
}

// held is an mbox locked for writing: its dotlock (nil where one cannot
// be made) and the file, open for reading and appending, with its fcntl
// lock.
type held struct {
	f      *os.File
	fi     os.FileInfo // f's state when locked, or when the last appendMany began
	end    int64       // f's size after the last appendMany
	dl     *dotlock
	path   string
	logger *slog.Logger
}

// lockMbox opens (creating) the mbox name in fsys (path in messages) and
// takes both its locks in opts.Order, within opts.LockTimeout. Errors
// are *Error.
func lockMbox(ctx context.Context, fsys dirFS, name, path string, opts Options) (*held, error) {
	lockCtx, cancel := context.WithTimeout(ctx, opts.LockTimeout)
	defer cancel()
	lockErr := func(err error) error {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("%w (waited %v)", ErrLockTimeout, opts.LockTimeout)
		}
		return err
	}
	h := &held{path: path, logger: opts.Logger}
	dot := func() error {
		dl, err := takeDotlock(lockCtx, fsys, name+".lock", opts)
		if err != nil {
			return newError(path, "dotlock", lockErr(err))
		}
		h.dl = dl
		return nil
	}
	fcntl := func() error {
		f, fi, err := openLocked(lockCtx, fsys, name, path, opts.Logger)
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				e.Err = lockErr(e.Err)
				e.temp = temporary(e.Err)
			}
			return err
		}
		h.f, h.fi = f, fi
		return nil
	}
	steps := []func() error{dot, fcntl}
	if opts.Order == FcntlFirst {
		steps = []func() error{fcntl, dot}
	}
	for _, step := range steps {
		if err := step(); err != nil {
			h.release()
			return nil, err
		}
	}
	return h, nil
}

// release drops the fcntl lock (by closing the file), then the dotlock.
func (h *held) release() {
	if h.f != nil {
		h.f.Close()
	}
	h.dl.release(h.logger)
}

// openLocked opens (creating) the mbox and takes the fcntl lock,
// returning the file and its state under the lock. If the name was
// replaced while we waited for the lock (a reader that rewrites the mbox
// through a new file and a rename), it starts over on the new file,
// since appending to the old one would lose the message.
func openLocked(ctx context.Context, fsys dirFS, name, path string, logger *slog.Logger) (*os.File, os.FileInfo, error) {
	for attempt := 0; ; attempt++ {
		f, err := openFile(fsys, name, path)
		if err != nil {
			return nil, nil, err
		}
		if err := lockFile(ctx, f, logger); err != nil {
			f.Close()
			return nil, nil, newError(path, "lock", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, nil, newError(path, "stat", err)
		}
		cur, err := fsys.Lstat(name)
		if err == nil && cur.Mode()&os.ModeSymlink != 0 {
			// An os.Root follows a symlink that stays inside it,
			// O_NOFOLLOW or not: what was opened must be what the
			// name is.
			f.Close()
			return nil, nil, newError(path, "open", ErrSymlink)
		}
		if err == nil && os.SameFile(fi, cur) {
			if err := checkMbox(fi); err != nil {
				f.Close()
				return nil, nil, newError(path, "open", err)
			}
			return f, fi, nil
		}
		f.Close()
		if attempt == 3 {
			return nil, nil, newError(path, "lock", errors.New("the file keeps being replaced"))
		}
	}
}

// openFile opens name in fsys (path in messages) for appending without
// following a symlink or blocking on a FIFO, and checks that it is a
// plain file before it is locked; openLocked checks the rest under the
// lock.
func openFile(fsys dirFS, name, path string) (*os.File, error) {
	f, err := fsys.OpenFile(name, os.O_RDWR|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o600)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || escapes(err) {
			return nil, newError(path, "open", ErrSymlink)
		}
		return nil, newError(path, "open", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, newError(path, "stat", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, newError(path, "open", fmt.Errorf("%w (%v)", ErrNotRegular, fi.Mode().Type()))
	}
	return f, nil
}

// checkMbox refuses a file that is not safe to append to: one that is
// executable, or has other hard links (a link to some other file that
// the mail would land in).
func checkMbox(fi os.FileInfo) error {
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%w (%v)", ErrNotRegular, fi.Mode().Type())
	case fi.Mode().Perm()&0o111 != 0:
		return fmt.Errorf("%w: it is executable", ErrUnsafe)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && uint64(st.Nlink) > 1 {
		return fmt.Errorf("%w: it has %d hard links", ErrUnsafe, st.Nlink)
	}
	return nil
}

// fromLine is the From line (without its line end) of a message from
// the envelope sender from, delivered at date: in local time, as
// Postfix, procmail and Dovecot write it (the caller gives date in local
// time) and Dovecot reads it back.
func fromLine(from string, date time.Time) string {
	return "From " + envelopeSender(from) + " " + date.Format(time.ANSIC)
}

// writeMessage writes one message in mboxrd form to bw and flushes it:
// the From line (given without its line end), the quoted message with
// its hidden fields dropped and extra added at the end of its header,
// the empty line that ends it.
func writeMessage(bw *bufio.Writer, from string, r io.Reader, extra string) error {
	bw.WriteString(from + "\n")
	q := newQuoter(bw)
	hf := &headerFilter{w: q, extra: extra}
	if _, err := io.Copy(hf, r); err != nil {
		return err
	}
	if err := hf.Close(); err != nil {
		return err
	}
	if err := q.Close(); err != nil {
		return err
	}
	bw.WriteString("\n")
	return bw.Flush()
}

// padding returns what must come before a new "From " line so that it
// follows an empty line: nothing for an empty file or one ending in an
// empty line, "\n" after a final line, "\n\n" after a last line that
// lacks its newline (a file written by a careless tool).
func padding(f *os.File, size int64) (string, error) {
	if size == 0 {
		return "", nil
	}
	var tail [2]byte
	n := min(size, 2)
	if _, err := f.ReadAt(tail[2-n:], size-n); err != nil {
		return "", fmt.Errorf("read the end of the file: %w", err)
	}
	switch {
	case tail[1] != '\n':
		return "\n\n", nil
	case n == 2 && tail[0] != '\n':
		return "\n", nil
	}
	return "", nil
}

// envelopeSender is the sender as written in the From line: one word,
// since readers (Dovecot, formail) end the sender at the first space.
// Whitespace and control characters, which could break the line or the
// file, become '_'.
func envelopeSender(from string) string {
	if from == "" {
		return "MAILER-DAEMON"
	}
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f {
			return '_'
		}
		return r
	}, from)
}

// countWriter counts the bytes written.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ctxReader stops a long copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("read the message: %w", err)
	}
	return n, err
}

// dirFS is where Append finds the mbox and its dotlock: the whole file
// system (osFS), or the mbox's directory as an *os.Root.
type dirFS interface {
	OpenFile(name string, flag int, perm os.FileMode) (*os.File, error)
	Lstat(name string) (os.FileInfo, error)
	Remove(name string) error
}

// osFS is dirFS over absolute paths.
type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag, perm)
}
func (osFS) Lstat(name string) (os.FileInfo, error) { return os.Lstat(name) }
func (osFS) Remove(name string) error               { return os.Remove(name) }

// escapes reports whether err is an os.Root refusing a path that leads
// out of it (the os package exports no sentinel for it).
func escapes(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe) && pe.Err.Error() == "path escapes from parent"
}
