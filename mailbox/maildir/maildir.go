// Package maildir delivers mail into Maildir++ directories under a mail
// root: <root>/<home>/Maildir/{tmp,new,cur}.
//
// Durability (DESIGN.md "Promises"): a message is written to tmp/ with
// O_EXCL, every write checked, the file fsynced; Commit renames it into new/
// and fsyncs new/ before returning. Only then may the caller acknowledge.
// Directory fsyncs are shared between concurrent deliveries to the same
// Maildir (group commit, see groupSync). github.com/emersion/go-maildir does
// none of this, so delivery is written here; reading and flag handling for
// IMAP may use go-maildir, since Maildir stays the source of truth on disk.
//
// Files are stored with LF line endings, as mutt, Dovecot and Postfix's
// local(8) expect; the caller converts from the wire's CRLF.
//
// All paths go through an os.Root opened at the mail root, so that neither a
// hostile home name nor a symlink planted in a mail home can make a delivery
// write outside it. The package knows nothing of sockets or accounts.
package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mailroom/mailbox"
)

// Options configure a Store.
type Options struct {
	// Root is the mail root directory, normally <data_dir>/mail. It is
	// created (mode 0700) if missing.
	Root string
	// Hostname goes into unique file names, as the Maildir spec asks.
	Hostname string
}

// Store delivers into the Maildirs below one mail root. It is safe for
// concurrent use.
type Store struct {
	root    *os.Root
	host    string
	pid     int
	counter atomic.Uint64
	syncers sync.Map // Maildir path -> *groupSync

	// syncFile is f.Sync in production; tests replace it to exercise the
	// failure path.
	syncFile func(*os.File) error
}

// Open opens (creating if needed) the mail root.
func Open(opts Options) (*Store, error) {
	if err := os.MkdirAll(opts.Root, 0o700); err != nil {
		return nil, fmt.Errorf("create mail root: %w", err)
	}
	root, err := os.OpenRoot(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("open mail root: %w", err)
	}
	host := opts.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	// Maildir file names may not contain "/" or ":"; the spec's escapes.
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	return &Store{
		root:     root,
		host:     host,
		pid:      os.Getpid(),
		syncFile: (*os.File).Sync,
	}, nil
}

// Close releases the mail root.
func (s *Store) Close() error { return s.root.Close() }

// Maildir returns the Maildir path of home relative to the mail root.
func Maildir(home string) string { return path.Join(home, "Maildir") }

// checkHome refuses home names that are not plain relative paths. os.Root
// would stop an escape anyway; this gives a clear error first.
func checkHome(home string) error {
	if home == "" || path.IsAbs(home) || path.Clean(home) != home || strings.HasPrefix(home, "..") ||
		strings.ContainsAny(home, "\x00\\") {
		return fmt.Errorf("maildir: invalid mail home %q", home)
	}
	for _, elem := range strings.Split(home, "/") {
		if elem == ".." || elem == "." || strings.HasPrefix(elem, ".") {
			return fmt.Errorf("maildir: invalid mail home %q", home)
		}
	}
	return nil
}

// Staged is a message written durably into tmp/ but not yet visible; it
// implements mailbox.Staged.
type Staged struct {
	s       *Store
	md      string // Maildir path relative to the root
	name    string // base name in tmp/
	final   string // base name in new/
	size    int64
	visible bool
}

// Size is the number of bytes written.
func (m *Staged) Size() int64 { return m.size }

// Path is the file's path relative to the mail root, wherever it is now.
func (m *Staged) Path() string {
	if m.visible {
		return path.Join(m.md, "new", m.final)
	}
	return path.Join(m.md, "tmp", m.name)
}

// Stage writes r into a new file in home's Maildir tmp/ and fsyncs it,
// creating the Maildir (mode 0700) if this is its first message. Nothing is
// visible to readers until Commit. On error nothing is left behind.
func (s *Store) Stage(ctx context.Context, home string, r io.Reader) (mailbox.Staged, error) {
	if err := checkHome(home); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	md := Maildir(home)
	now := time.Now()
	// Microseconds are zero-padded so that names sort in delivery order.
	name := fmt.Sprintf("%d.M%06dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, s.pid, s.counter.Add(1), s.host)
	tmp := path.Join(md, "tmp", name)

	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		if err = s.create(md); err != nil {
			return nil, err
		}
		f, err = s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("maildir: create %s: %w", tmp, err)
	}
	n, err := io.Copy(f, r)
	if err == nil {
		err = s.syncFile(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.root.Remove(tmp)
		return nil, fmt.Errorf("maildir: write %s: %w", tmp, err)
	}
	return &Staged{
		s:     s,
		md:    md,
		name:  name,
		final: name + ",S=" + strconv.FormatInt(n, 10),
		size:  n,
	}, nil
}

// Commit moves the message into new/ and returns once that rename is on
// disk. It is not cancelled by ctx: once the bytes are written, finishing is
// cheaper and safer than leaving the outcome unknown.
func (m *Staged) Commit(context.Context) error {
	if m.visible {
		return nil
	}
	from, to := path.Join(m.md, "tmp", m.name), path.Join(m.md, "new", m.final)
	if err := m.s.root.Rename(from, to); err != nil {
		return fmt.Errorf("maildir: move %s to new/: %w", from, err)
	}
	m.visible = true
	if err := m.s.syncDir(path.Join(m.md, "new")); err != nil {
		return fmt.Errorf("maildir: sync %s/new: %w", m.md, err)
	}
	return nil
}

// Abort removes the message, whether staged or committed. A committed
// message may already have been seen by a reader; callers abort a committed
// message only before acknowledging it, when a duplicate is the worst case.
func (m *Staged) Abort() error {
	if err := m.s.root.Remove(m.Path()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("maildir: remove %s: %w", m.Path(), err)
	}
	return nil
}

// syncDir fsyncs dir, sharing the fsync with concurrent callers.
func (s *Store) syncDir(dir string) error {
	g, _ := s.syncers.LoadOrStore(dir, new(groupSync))
	return g.(*groupSync).sync(func() error { return s.fsyncDir(dir) })
}

func (s *Store) fsyncDir(dir string) error {
	d, err := s.root.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// create makes md and its tmp/new/cur with mode 0700, fsyncing the parent
// of each directory it makes so that the new directories survive a crash.
// It runs once per mail home, on its first delivery.
func (s *Store) create(md string) error {
	var dirs []string
	parts := strings.Split(md, "/")
	for i := range parts {
		dirs = append(dirs, path.Join(parts[:i+1]...))
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		dirs = append(dirs, path.Join(md, sub))
	}
	for _, dir := range dirs {
		err := s.root.Mkdir(dir, 0o700)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("maildir: create %s: %w", dir, err)
		}
		if err := s.fsyncDir(path.Dir(dir)); err != nil {
			return fmt.Errorf("maildir: sync %s: %w", path.Dir(dir), err)
		}
	}
	return nil
}

var _ mailbox.Staged = (*Staged)(nil)
