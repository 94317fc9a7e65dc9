package mbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Lock polling: the first retry comes quickly, since most holders are
// other deliveries that finish in milliseconds; later ones back off so
// that a mail reader holding the mailbox open costs little.
const (
	firstRetry = 10 * time.Millisecond
	maxRetry   = 500 * time.Millisecond
)

// pidLine is what a dotlock holds: this process's pid and a newline.
var pidLine = strconv.Itoa(os.Getpid()) + "\n"

// dotlock is a held <mbox>.lock file.
type dotlock struct {
	fsys dirFS
	path string
	fi   fs.FileInfo // ours, to recognise it at release
}

// takeDotlock creates lockPath with O_EXCL, retrying until ctx ends, and
// removes a lock file older than opts.StaleLock (left by a crashed
// writer: mutt, procmail and Postfix all break such locks after a few
// minutes, so a live holder refreshes or finishes well before).
//
// A directory where the lock cannot be created (EACCES, EPERM, EROFS)
// gives a nil dotlock and no error: the fcntl lock still protects the
// file. Postfix does the same for file deliveries (MBOX_DOT_LOCK_MAY_FAIL),
// since /var/mail and friends are often writable only by group mail.
func takeDotlock(ctx context.Context, fsys dirFS, lockPath string, opts Options) (*dotlock, error) {
	delay := firstRetry
	logged := false
	for {
		// O_NONBLOCK changes nothing for a new regular file, but spares
		// os.File the four fcntl calls that would set it and take it back.
		f, err := fsys.OpenFile(lockPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o600)
		if err == nil {
			// The holder's pid, as liblockfile and procmail write it, so
			// that tools on this host can tell a live lock from a stale one.
			_, werr := f.WriteString(pidLine)
			fi, serr := f.Stat()
			cerr := f.Close()
			if err = errors.Join(werr, serr, cerr); err != nil {
				fsys.Remove(lockPath)
				return nil, fmt.Errorf("create dotlock %s: %w", lockPath, err)
			}
			return &dotlock{fsys: fsys, path: lockPath, fi: fi}, nil
		}
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS) {
			opts.Logger.Debug("mbox dotlock not possible, relying on fcntl", "lock", lockPath, "err", err)
			return nil, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create dotlock %s: %w", lockPath, err)
		}
		if fi, err := fsys.Lstat(lockPath); err == nil {
			if age := time.Since(fi.ModTime()); age > opts.StaleLock {
				// Remove it only if it is still the same file; two
				// writers breaking the same stale lock at once can still
				// race, but the fcntl lock keeps them apart.
				if fi2, err := fsys.Lstat(lockPath); err == nil && os.SameFile(fi, fi2) && fi2.ModTime().Equal(fi.ModTime()) {
					opts.Logger.Warn("breaking stale mbox dotlock", "lock", lockPath, "age", age.Round(time.Second))
					if err := fsys.Remove(lockPath); err == nil || errors.Is(err, fs.ErrNotExist) {
						continue
					}
				}
			}
		} else if errors.Is(err, fs.ErrNotExist) {
			continue // released between our two calls
		}
		if !logged {
			opts.Logger.Debug("mbox lock busy", "lock", lockPath, "kind", "dotlock")
			logged = true
		}
		if err := sleep(ctx, &delay); err != nil {
			return nil, err
		}
	}
}

// release removes the lock file if it is still ours: if another writer
// broke it as stale and took its own, that one is left alone.
func (d *dotlock) release(logger *slog.Logger) {
	if d == nil {
		return
	}
	fi, err := d.fsys.Lstat(d.path)
	if err != nil || !os.SameFile(fi, d.fi) {
		logger.Warn("mbox dotlock was taken over by another writer", "lock", d.path)
		return
	}
	if err := d.fsys.Remove(d.path); err != nil {
		logger.Warn("remove mbox dotlock", "lock", d.path, "err", err)
	}
}

// ofdUnsupported is set once the kernel refuses open file description
// locks; from then on classic POSIX locks are used.
var ofdUnsupported atomic.Bool

// lockFile takes an exclusive fcntl lock on the whole of f, retrying until
// ctx ends. The kernel offers no bounded wait (F_SETLKW is restarted
// after signals), so the lock is polled with F_SETLK, as Postfix's
// deliver_flock does.
//
// Where the kernel has them (Linux), open file description locks are
// used: they conflict with the classic fcntl locks of Dovecot, Postfix
// and mutt in other processes, and unlike those they also keep apart two
// goroutines of this process and are not dropped when some other
// descriptor of the file is closed. Classic locks, the fallback, do
// neither; the dotlock then keeps goroutines apart.
func lockFile(ctx context.Context, f *os.File, logger *slog.Logger) error {
	delay := firstRetry
	logged := false
	for {
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
		cmd := classicLock
		if ofdLock != 0 && !ofdUnsupported.Load() {
			cmd = ofdLock
		}
		err := unix.FcntlFlock(f.Fd(), cmd, &lk)
		switch {
		case err == nil:
			return nil
		case cmd == ofdLock && errors.Is(err, unix.EINVAL):
			ofdUnsupported.Store(true)
			continue
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EACCES), errors.Is(err, unix.EINTR):
			// Held by someone else.
		default:
			return os.NewSyscallError("fcntl lock", err)
		}
		if !logged {
			logger.Debug("mbox lock busy", "mbox", f.Name(), "kind", "fcntl")
			logged = true
		}
		if err := sleep(ctx, &delay); err != nil {
			return err
		}
	}
}

// sleep waits *delay, then doubles it up to maxRetry; it returns ctx's
// error if ctx ends first.
func sleep(ctx context.Context, delay *time.Duration) error {
	t := time.NewTimer(*delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	*delay = min(*delay*2, maxRetry)
	return nil
}
