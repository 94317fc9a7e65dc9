// Package maildir delivers mail into Maildir++ directories under a mail
// root: <root>/<home>/Maildir/{tmp,new,cur}.
//
// Durability (DESIGN.md "Promises"): a message is written to tmp/, every
// write checked, the file fsynced; Commit puts it into new/ and fsyncs new/
// before returning. Only then may the caller acknowledge. Where the kernel
// offers O_TMPFILE the file is made in tmp/ without a name and Commit links
// it into new/ (linkat), so that tmp/ is not touched at all: on ext4
// without a journal every fsync of a file newly named in tmp/ also writes
// tmp/'s directory block and inode, which the deliveries into one Maildir
// then queue for (tmpfile.go). Elsewhere the file is created in tmp/ with
// O_EXCL and renamed. Either way the message is complete and on disk
// before it has a name in new/, and a crash leaves at most a file in tmp/.
// Directory fsyncs are shared between concurrent deliveries to the same
// Maildir (group commit, see durable.Group), and each Maildir's tmp/ and new/
// stay open between deliveries (deliverdirs.go). github.com/emersion/go-maildir does
// none of this, so delivery and the IMAP side are written here.
//
// Files are stored with LF line endings, as mutt, Dovecot and Postfix's
// local(8) expect; the caller converts from the wire's CRLF. File names are
// Dovecot's: "<time>.M<usec>P<pid>Q<n>.<host>,S=<bytes>,W=<bytes with CRLF>"
// then ":2,<flags>" once the message is in cur/.
//
// Index (index.go) serves the Maildirs to the IMAP server: folders are
// Maildir++ directories (".Archive.2024", names in modified UTF-7 as
// Dovecot writes them), flags live in the file names, and a bbolt index in
// mailroom.db keeps UIDVALIDITY, UIDs, keywords and modification
// sequences. The Maildir stays the truth: the index follows what other
// programs do to the files, and is rebuilt from them (under a new
// UIDVALIDITY) if it is lost. Commit tells the Index of each delivery
// without waiting on it. The Index's folders also keep the ENVELOPE header
// fields of each message (mailbox.HeaderCache, cache.go), written behind
// in batches; a folder keeps its new/ and cur/ open between scans
// (handles.go); and Index.Close records what was seen of each directory,
// so that the first SELECT after a restart reads an unchanged folder from
// the index alone (seen.go). Changes to the index are made in memory and
// written by one committer, many to a transaction; a session answers,
// and other sessions see a change, once it is durable (committer.go). A
// scan trusts the sizes in Dovecot's file names and reads a message's
// internal date (its mtime) only when a client asks (dates.go).
//
// All paths go through an os.Root opened at the mail root, so that neither a
// hostile home name nor a symlink planted in a mail home can make a delivery
// write outside it. The package knows nothing of sockets or accounts.
package maildir

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"mailroom/internal/durable"
	"mailroom/mailbox"
	"mailroom/mailbox/index"
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
	root    *os.Root // for creating Maildirs, and opening where openat2 is missing
	rootDir *os.File // the same directory, for openat2
	host    string
	pid     int
	counter atomic.Uint64
	syncers sync.Map // Maildir path -> *durable.Group
	// ready holds the Maildirs known to exist durably (made or checked
	// by create in this process), each with its one creation.
	ready sync.Map // Maildir path -> *onceErr

	// noTmpfile is set if O_TMPFILE files cannot be made and linked
	// under the mail root (tmpfile.go); delivery then writes named files
	// in tmp/ and renames them. Tests set it to take that path.
	noTmpfile atomic.Bool

	// noOpenat2 is set once openat2 turns out to be unavailable (old
	// kernel, seccomp filter); from then on directories are opened
	// through os.Root. Tests set it to take that path.
	noOpenat2 atomic.Bool

	// syncFile is fsync(2) in production; tests replace it to exercise
	// the failure path.
	syncFile func(fd int) error
	// committed, when set (by NewIndex), is told the mail home and
	// folder of every delivery made visible. It must return at once:
	// delivery never waits on readers.
	committed atomic.Pointer[func(home, folder string)]
	// special, when set (by NewIndex), names home's folder of a special
	// use, "" if none is marked.
	special atomic.Pointer[func(home, use string) string]
	// kwLocks serialises the updates of each folder's dovecot-keywords.
	kwLocks sync.Map // Maildir path -> *sync.Mutex
	// dirCache keeps the Maildirs' tmp/ and new/ open for delivery.
	dirCache dirCache
}

// Open opens (creating if needed) the mail root.
func Open(opts Options) (*Store, error) {
	if err := os.MkdirAll(opts.Root, 0o700); err != nil {
		return nil, fmt.Errorf("create mail root: %w", err)
	}
	// The mail root's own entry must survive a crash too.
	if err := durable.SyncDir(filepath.Dir(opts.Root)); err != nil {
		return nil, fmt.Errorf("sync the mail root's parent: %w", err)
	}
	root, err := os.OpenRoot(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("open mail root: %w", err)
	}
	rootDir, err := os.Open(opts.Root)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("open mail root: %w", err)
	}
	host := opts.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	// Maildir file names may not contain "/" or ":"; the spec's escapes.
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	s := &Store{
		root:     root,
		rootDir:  rootDir,
		host:     host,
		pid:      os.Getpid(),
		syncFile: fsync,
	}
	s.noTmpfile.Store(!s.tmpfileWorks())
	return s, nil
}

// Close releases the mail root and the directories kept open.
func (s *Store) Close() error {
	s.dirCache.mu.Lock()
	for md, d := range s.dirCache.dirs {
		s.dirCache.dropLocked(md, d)
	}
	s.dirCache.mu.Unlock()
	s.rootDir.Close()
	return s.root.Close()
}

// Maildir returns the Maildir path of home relative to the mail root.
func Maildir(home string) string { return path.Join(home, "Maildir") }

// checkHome refuses home names that are not plain relative paths.
func checkHome(home string) error {
	if err := index.CheckHome(home); err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	return nil
}

// Staged is a message written durably into tmp/ but not yet visible; it
// implements mailbox.Staged. It holds tmp/ (and new/) open until Commit or
// Abort, so that the rename and the cleanup act on the directory the file
// was written in, by plain names, with no path to resolve again.
type Staged struct {
	s      *Store
	home   string
	folder string        // IMAP name of the folder, "INBOX" for the Maildir itself
	md     string        // Maildir path relative to the root
	dirs   *deliveryDirs // md/tmp and md/new (deliverdirs.go)
	name   string        // base name in tmp/ (unused by a tmpfile)
	final  string        // base name in new/
	// tmpfile says the message is an unnamed file (O_TMPFILE) open as
	// fd until Commit links it or Abort closes it.
	tmpfile bool
	fd      int
	// expected is new/'s group commit, told by stage that this message
	// will commit soon (durable.Group.Expect), until Commit or Abort.
	expected *durable.Group
	size     int64
	visible  bool // renamed into new/ (or cur/, with flags)
	done     bool // committed or aborted: the directory is closed
	// flags and kws are the message's first flags (StageFolder): with
	// any, Commit moves it into cur/ instead of new/; letters are the
	// keywords' Dovecot letters, once assigned.
	flags   sysFlags
	kws     []string
	letters string
}

// sub is the directory Commit moves the message into.
func (m *Staged) sub() string {
	if m.flags != 0 || len(m.kws) > 0 {
		return "cur"
	}
	return "new"
}

// visibleName is the file's name once committed.
func (m *Staged) visibleName() string {
	if m.sub() == "cur" {
		return m.final + infoSuffix(m.flags, m.letters)
	}
	return m.final
}

// Size is the number of bytes written.
func (m *Staged) Size() int64 { return m.size }

// Path is the file's path relative to the mail root, wherever it is now.
func (m *Staged) Path() string {
	if m.visible {
		return path.Join(m.md, m.sub(), m.visibleName())
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
	return s.stage(ctx, home, inbox, Maildir(home), r)
}

// StageSpecial is Stage into home's folder of special use use (RFC 6154,
// such as `\Junk`): the folder the index has marked so, or else the
// default folder of that use (Junk for `\Junk`), made if missing. A
// quarantined message goes there rather than to INBOX.
func (s *Store) StageSpecial(ctx context.Context, home, use string, r io.Reader) (mailbox.Staged, error) {
	if err := checkHome(home); err != nil {
		return nil, err
	}
	name := ""
	if f := s.special.Load(); f != nil {
		name = (*f)(home, use)
	}
	if name == "" {
		name = index.DefaultFolderOf(use)
	}
	if name == "" {
		return nil, fmt.Errorf("maildir: no folder of special use %q", use)
	}
	canon, dir, err := folderDir(name)
	if err != nil {
		return nil, err
	}
	return s.stage(ctx, home, canon, path.Join(Maildir(home), dir), r)
}

func (s *Store) stage(ctx context.Context, home, folder, md string, r io.Reader) (mailbox.Staged, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.ensure(md); err != nil {
		return nil, err
	}
	for retried := false; ; retried = true {
		dirs, err := s.acquireDirs(md)
		if isNotExist(err) && !retried {
			// Removed behind our back since: make it again.
			s.ready.Delete(md)
			if err = s.ensure(md); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("maildir: open %s: %w", md, err)
		}
		name := s.uniqueName()
		// A round of new/'s fsyncs starting while this file is written
		// waits a little for its Commit (durable.Group.Expect).
		newSync := s.syncer(path.Join(md, "new"))
		newSync.Expect()
		fd, lw, err := s.writeTmpfile(dirs.tmp, r)
		tmpfile := !errors.Is(err, errNoTmpfile)
		if !tmpfile {
			lw, err = s.writeFile(dirs.tmp, name, r, false)
		}
		if err != nil {
			newSync.Leave()
		}
		if isNotExist(err) && !retried {
			// tmp/ alone was removed under its kept handle (the
			// create failed, nothing was read): again, afresh.
			s.releaseDirs(dirs)
			s.dropDirs(md, dirs)
			s.ready.Delete(md)
			if err = s.ensure(md); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			s.releaseDirs(dirs)
			return nil, fmt.Errorf("maildir: write %s/tmp/%s: %w", md, name, err)
		}
		return &Staged{
			s:        s,
			home:     home,
			folder:   folder,
			md:       md,
			dirs:     dirs,
			name:     name,
			final:    sizedName(name, lw.n, lw.served()),
			tmpfile:  tmpfile,
			fd:       fd,
			expected: newSync,
			size:     lw.n,
		}, nil
	}
}

// uniqueName returns a new Maildir unique name (without sizes or flags).
func (s *Store) uniqueName() string {
	now := time.Now()
	// Microseconds are zero-padded so that names sort in delivery order.
	return fmt.Sprintf("%d.M%06dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, s.pid, s.counter.Add(1), s.host)
}

// sizedName adds Dovecot's size fields to a unique name: S= the bytes on
// disk, W= the bytes with CRLF line endings (what IMAP serves), so that
// an index can be built without reading the file.
func sizedName(unique string, disk, served int64) string {
	return unique + ",S=" + strconv.FormatInt(disk, 10) + ",W=" + strconv.FormatInt(served, 10)
}

// writeFile creates name in dir (O_EXCL, never following a symlink),
// copies r into it (turning CRLF into LF if toLF) and fsyncs it; on error
// it removes the file. The returned writer has counted the bytes written
// and the size as served.
func (s *Store) writeFile(dir *os.File, name string, r io.Reader, toLF bool) (*lfWriter, error) {
	return s.writeFileTimed(dir, name, r, toLF, time.Time{})
}

// writeFileTimed is writeFile that also sets the file's modification time
// (a message's internal date, as Dovecot keeps it) unless mtime is zero.
//
// The file is written through the raw descriptor and a pooled buffer, so
// that a message under the buffer's size (most mail) costs one write(2),
// trace header and all, and no allocation of buffers.
func (s *Store) writeFileTimed(dir *os.File, name string, r io.Reader, toLF bool, mtime time.Time) (*lfWriter, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	lw, err := s.fill(fd, r, toLF, mtime)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		unix.Unlinkat(int(dir.Fd()), name, 0)
		return nil, err
	}
	return lw, nil
}

// writeTmpfile writes r (as it is) into an unnamed file in dir and
// fsyncs it, returning its descriptor, which the caller closes. The error
// is errNoTmpfile, with nothing read, where O_TMPFILE cannot be used.
func (s *Store) writeTmpfile(dir *os.File, r io.Reader) (int, *lfWriter, error) {
	if s.noTmpfile.Load() {
		return -1, nil, errNoTmpfile
	}
	fd, err := openTmpfile(int(dir.Fd()))
	if err != nil {
		var st unix.Stat_t
		if err != errNoTmpfile && unix.Fstat(int(dir.Fd()), &st) == nil && st.Nlink == 0 {
			// tmp/ was removed under its handle, which makes ext4
			// answer EPERM: the caller makes the Maildir again.
			err = unix.ENOENT
		}
		return -1, nil, err
	}
	lw, err := s.fill(fd, r, false, time.Time{})
	if err != nil {
		unix.Close(fd) // the file goes with it
		return -1, nil, err
	}
	return fd, lw, nil
}

// errNoTmpfile says that O_TMPFILE is not available here.
var errNoTmpfile = errors.New("O_TMPFILE unavailable")

// tmpfileWorks tries an unnamed file linked into the mail root and
// removed again: O_TMPFILE needs the file system's support, and the link
// needs /proc (tmpfile_linux.go).
func (s *Store) tmpfileWorks() bool {
	dirfd := int(s.rootDir.Fd())
	fd, err := openTmpfile(dirfd)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	name := ".tmpfile-check." + s.uniqueName()
	if err := linkTmpfile(fd, dirfd, name); err != nil {
		return false
	}
	unix.Unlinkat(dirfd, name, 0)
	return true
}

// fill copies r into the file open as fd (turning CRLF into LF if toLF),
// sets its modification time unless mtime is zero, and fsyncs it.
func (s *Store) fill(fd int, r io.Reader, toLF bool, mtime time.Time) (*lfWriter, error) {
	var err error
	bufs := writePool.Get().(*writeBufs)
	defer func() {
		bufs.w.Reset(nil)
		writePool.Put(bufs)
	}()
	bufs.w.Reset(fdWriter(fd))
	lw := &lfWriter{w: bufs.w, toLF: toLF}
	// Read into our buffer rather than io.Copy: the readers we are given
	// (io.MultiReader) have a WriteTo that allocates its own.
	for {
		n, rerr := r.Read(bufs.in[:])
		if n > 0 {
			if _, err = lw.Write(bufs.in[:n]); err != nil {
				break
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	if err == nil {
		err = lw.flush()
	}
	if err == nil {
		err = bufs.w.Flush()
	}
	if err == nil && !mtime.IsZero() {
		tv := unix.NsecToTimeval(mtime.UnixNano())
		err = unix.Futimes(fd, []unix.Timeval{tv, tv})
	}
	if err == nil {
		err = s.syncFile(fd)
	}
	if err != nil {
		return nil, err
	}
	return lw, nil
}

// writeBufs are writeFileTimed's buffers: one for reading, one in front
// of the file.
type writeBufs struct {
	in [32 << 10]byte
	w  *bufio.Writer
}

var writePool = sync.Pool{New: func() any { return &writeBufs{w: bufio.NewWriterSize(nil, 64<<10)} }}

// fdWriter writes to a file descriptor, with no os.File around it (whose
// making costs an fcntl(2) per file).
type fdWriter int

func (fd fdWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(int(fd), p[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, &os.PathError{Op: "write", Path: "message file", Err: err}
		}
		if m == 0 {
			return n, io.ErrShortWrite
		}
		n += m
	}
	return n, nil
}

// fsync is the production syncFile.
func fsync(fd int) error {
	for {
		err := unix.Fsync(fd)
		if err != unix.EINTR {
			return err
		}
	}
}

// Commit moves the message into new/ and returns once that rename is on
// disk. It is not cancelled by ctx: once the bytes are written, finishing is
// cheaper and safer than leaving the outcome unknown.
func (m *Staged) Commit(context.Context) error {
	if m.visible || m.done {
		return nil
	}
	defer m.leaveSync() // if it fails before the fsync
	sub := m.sub()
	newDir := m.dirs.new
	if sub != "new" {
		d, err := m.s.openDir(path.Join(m.md, sub))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				// Removed behind our back: this delivery fails (4xx), the
				// next one makes the Maildir again.
				m.s.ready.Delete(m.md)
			}
			return fmt.Errorf("maildir: open %s/%s: %w", m.md, sub, err)
		}
		defer d.Close()
		newDir = d
	}
	if len(m.kws) > 0 && m.letters == "" {
		// Dovecot's way, before the file is visible: letters in the
		// name, their keywords in dovecot-keywords.
		var err error
		if m.letters, err = m.s.keywordLetters(m.md, m.kws); err != nil {
			return err
		}
	}
	var err error
	if m.tmpfile {
		err = linkTmpfile(m.fd, int(newDir.Fd()), m.visibleName())
	} else {
		err = unix.Renameat(int(m.dirs.tmp.Fd()), m.name, int(newDir.Fd()), m.visibleName())
	}
	if err != nil {
		if isNotExist(err) {
			// new/ (or tmp/) removed under its handle: this delivery
			// fails (4xx), the next one makes the Maildir again.
			m.s.dropDirs(m.md, m.dirs)
			m.s.ready.Delete(m.md)
		}
		return fmt.Errorf("maildir: move %s/tmp/%s to %s/: %w", m.md, m.name, sub, err)
	}
	m.closeTmpfile()
	m.visible = true
	if err := m.syncVisible(sub, newDir); err != nil {
		return fmt.Errorf("maildir: sync %s/%s: %w", m.md, sub, err)
	}
	m.done = true
	m.s.releaseDirs(m.dirs)
	m.s.notifyCommitted(m.home, m.folder)
	return nil
}

// syncVisible fsyncs sub/ (open as d) through its group commit, which
// new/'s has been waiting for since stage.
func (m *Staged) syncVisible(sub string, d *os.File) error {
	g := m.expected
	m.expected = nil
	if sub == "new" && g != nil {
		return g.DoExpected(d.Sync)
	}
	m.leaveSync()
	return m.s.syncDir(path.Join(m.md, sub), d)
}

// leaveSync withdraws the message from new/'s group commit, if it is
// still expected there.
func (m *Staged) leaveSync() {
	if m.expected != nil {
		m.expected.Leave()
		m.expected = nil
	}
}

// closeTmpfile closes the unnamed file's descriptor, if still open.
func (m *Staged) closeTmpfile() {
	if m.tmpfile && m.fd >= 0 {
		unix.Close(m.fd)
		m.fd = -1
	}
}

// notifyCommitted tells the index (if any) that a folder of home changed.
func (s *Store) notifyCommitted(home, folder string) {
	if f := s.committed.Load(); f != nil {
		(*f)(home, folder)
	}
}

// Abort removes the message, whether staged or committed. A committed
// message may already have been seen by a reader; callers abort a committed
// message only before acknowledging it, when a duplicate is the worst case.
func (m *Staged) Abort() error {
	m.leaveSync()
	if m.done && !m.visible {
		return nil
	}
	var err error
	if m.visible {
		var newDir *os.File
		if newDir, err = m.s.openDir(path.Join(m.md, m.sub())); err == nil {
			err = unix.Unlinkat(int(newDir.Fd()), m.visibleName(), 0)
			newDir.Close()
		}
	} else if m.tmpfile {
		m.closeTmpfile() // an unnamed file goes with its descriptor
	} else {
		err = unix.Unlinkat(int(m.dirs.tmp.Fd()), m.name, 0)
	}
	if !m.done {
		m.s.releaseDirs(m.dirs)
	}
	wasVisible := m.visible
	m.done, m.visible = true, false
	if wasVisible {
		m.s.notifyCommitted(m.home, m.folder)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("maildir: remove %s: %w", m.Path(), err)
	}
	return nil
}

// syncDir fsyncs dir (open as d), sharing the fsync with concurrent
// callers for the same directory.
func (s *Store) syncDir(dir string, d *os.File) error {
	return s.syncer(dir).Do(d.Sync)
}

// syncer is the group commit of dir's fsyncs.
func (s *Store) syncer(dir string) *durable.Group {
	g, _ := s.syncers.LoadOrStore(dir, new(durable.Group))
	return g.(*durable.Group)
}

func (s *Store) fsyncDir(dir string) error {
	d, err := s.openDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ensure makes sure md exists durably before the first delivery into it
// in this process; concurrent first deliveries wait for one creation, so
// none of them can answer before the directories are on disk.
func (s *Store) ensure(md string) error {
	v, _ := s.ready.LoadOrStore(md, new(onceErr))
	o := v.(*onceErr)
	o.once.Do(func() { o.err = s.create(md) })
	if o.err != nil {
		s.ready.CompareAndDelete(md, o) // let the next delivery try again
	}
	return o.err
}

type onceErr struct {
	once sync.Once
	err  error
}

// create makes md and its tmp/new/cur with mode 0700 where missing, and
// fsyncs the parent of each, so that they survive a crash. It runs once
// per mail home and process, on its first delivery.
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
		// The parent is fsynced even if the directory exists already: a
		// concurrent first delivery may have made it and not yet synced
		// it, and this delivery must not answer before it is durable.
		if err := s.root.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("maildir: create %s: %w", dir, err)
		}
		if err := s.fsyncDir(path.Dir(dir)); err != nil {
			return fmt.Errorf("maildir: sync %s: %w", path.Dir(dir), err)
		}
	}
	return nil
}

var _ mailbox.Staged = (*Staged)(nil)
