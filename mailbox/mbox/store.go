package mbox

// Store: mbox as a whole mail store, the second implementation (beside
// maildir) of delivery's Stage/Commit and of mailbox.Folders, so that
// the delivery agent, the IMAP server and the CLI do not know which
// format they talk to.
//
// Layout, as Dovecot's mail_location = mbox:~/mail:INBOX=~/mbox lays it
// out (and mutt reads it): INBOX is the file <home>/mbox (or the spool
// file StoreOptions.Inbox names, such as /var/mail/alice); every other
// folder is a file under <home>/mail/, "/" between levels becoming a
// directory, each level in modified UTF-7 as Dovecot spells it
// (Archive/2024 is <home>/mail/Archive/2024). As in Dovecot, a folder is
// either a file (it holds messages) or a directory (it holds folders,
// and is listed as \Noselect): a folder that holds messages cannot have
// children, and CREATE of one below it is refused.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"mailroom/mailbox"
	"mailroom/mailbox/index"
	"mailroom/mailbox/mutf7"
)

// StoreOptions configure a Store.
type StoreOptions struct {
	// Root is the mail root (<data_dir>/mail); mail homes are relative to
	// it. It must exist.
	Root string
	// Inbox, if set, is where INBOX is kept instead of <home>/mbox: an
	// absolute path in which {local} and {domain} stand for the mail
	// home's last and first levels ([delivery] mbox_inbox, such as
	// "/var/mail/{local}").
	Inbox string
	// Lock configures the locks of every write (its Root is unused).
	Lock Options
	// DB holds the IMAP index (bucket "mbox"); without it the Store only
	// delivers, and Open fails.
	DB *bolt.DB
	// Logger receives what the store notices (nil discards).
	Logger *slog.Logger
	// Converting lets a home hold a Maildir beside the mbox files, for
	// `mailroom convert` alone (which moves the Maildir aside once the
	// copy is checked); otherwise such a home is refused (FormatError).
	Converting bool
}

// Store delivers into and serves the mbox files below one mail root. It
// implements mda's Store, SpecialStore and FolderStore, and imap.Store.
// It is safe for concurrent use.
type Store struct {
	opts StoreOptions
	root *os.Root
	log  *slog.Logger

	// writers serialises this process's writers of one file (by path)
	// before they take its dotlock and fcntl lock, so that they queue
	// instead of polling the dotlock.
	writers sync.Map // string -> *sync.Mutex

	// ready holds the directories (relative to the mail root) that
	// deliveries found in place, in a home found to hold no Maildir, so
	// that the next deliveries there look for neither again. A directory
	// found missing at delivery leaves it (see lock).
	ready sync.Map // string -> struct{}

	accts index.Shared[account] // by home

	// cacheBytes is what the header caches of all folders hold.
	cacheBytes atomic.Int64

	// rewriteHook, set by tests only, is called at each step of a
	// rewrite (see folder.rewrite), to crash or race there.
	rewriteHook func(step string)
}

// OpenStore opens the store over opts.Root.
func OpenStore(opts StoreOptions) (*Store, error) {
	if opts.Inbox != "" && !filepath.IsAbs(opts.Inbox) {
		return nil, fmt.Errorf("mbox: inbox %q: %w", opts.Inbox, ErrRelative)
	}
	root, err := os.OpenRoot(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("mbox: open mail root: %w", err)
	}
	opts.Lock = opts.Lock.withDefaults()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Lock.Logger == nil || opts.Logger != nil {
		opts.Lock.Logger = log
	}
	s := &Store{opts: opts, root: root, log: log}
	if opts.DB != nil {
		if err := opts.DB.Update(tree.Create); err != nil {
			root.Close()
			return nil, fmt.Errorf("mbox: create index bucket: %w", err)
		}
	}
	return s, nil
}

// Close releases the mail root.
func (s *Store) Close() error { return s.root.Close() }

const inbox = "INBOX"

// checkHome refuses home names that are not plain relative paths.
func checkHome(home string) error {
	if err := index.CheckHome(home); err != nil {
		return fmt.Errorf("mbox: %w", err)
	}
	return nil
}

func badName(name, why string) error {
	return fmt.Errorf("%w %q: %s", mailbox.ErrBadFolderName, name, why)
}

// canonical checks an IMAP folder name and returns its canonical spelling
// (a first level "inbox" in any case is "INBOX") and, but for INBOX, its
// path below <home>/mail. Anything that could lead out of it, clash with
// a lock or temporary file, or not come back unchanged, is refused.
func canonical(name string) (canon, rel string, err error) {
	switch {
	case name == "":
		return "", "", badName(name, "empty")
	case len(name) > 1000:
		return "", "", badName(name, "too long")
	case !utf8.ValidString(name):
		return "", "", badName(name, "not UTF-8")
	case strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/"):
		return "", "", badName(name, `"/" at either end`)
	}
	levels := strings.Split(name, "/")
	if strings.EqualFold(levels[0], inbox) {
		levels[0] = inbox
	}
	if len(levels) == 1 && levels[0] == inbox {
		return inbox, "", nil
	}
	enc := make([]string, len(levels))
	for i, l := range levels {
		switch {
		case l == "":
			return "", "", badName(name, "empty level")
		case strings.HasPrefix(l, "."):
			return "", "", badName(name, `a level starting with "."`)
		case strings.HasSuffix(l, ".lock"):
			return "", "", badName(name, `a level ending in ".lock" (the name of a dotlock)`)
		}
		for _, r := range l {
			if r == '*' || r == '%' {
				return "", "", badName(name, "wildcard in a name")
			}
			if unicode.IsControl(r) {
				return "", "", badName(name, "control character")
			}
		}
		e, err := mutf7.Encode(l)
		if err != nil {
			return "", "", badName(name, err.Error())
		}
		if len(e) > 255 {
			return "", "", badName(name, "too long")
		}
		enc[i] = e
	}
	return strings.Join(levels, "/"), strings.Join(enc, "/"), nil
}

// fileFolder is the reverse of canonical for a path found below
// <home>/mail, or ok false for one that is not a folder.
func fileFolder(rel string) (string, bool) {
	levels := strings.Split(rel, "/")
	for i, l := range levels {
		d, err := mutf7.Decode(l)
		if err != nil {
			return "", false
		}
		levels[i] = d
	}
	name := strings.Join(levels, "/")
	canon, back, err := canonical(name)
	if err != nil || back != rel || canon == inbox {
		return "", false
	}
	return canon, true
}

// place is where a folder's file is: the directory it is in (relative to
// the mail root, or absolute for a spool INBOX), and its name there.
type place struct {
	dir  string
	abs  bool
	name string
}

func (p place) String() string { return path.Join(p.dir, p.name) }

// place returns where home's folder canon (canonical) is.
func (s *Store) place(home, canon string) place {
	if canon == inbox {
		if s.opts.Inbox != "" {
			domain, local := path.Split(home)
			domain = strings.TrimSuffix(domain, "/")
			if i := strings.IndexByte(domain, '/'); i >= 0 {
				domain = domain[:i]
			}
			p := strings.NewReplacer("{local}", local, "{domain}", domain).Replace(s.opts.Inbox)
			return place{dir: filepath.Dir(p), abs: true, name: filepath.Base(p)}
		}
		return place{dir: home, name: "mbox"}
	}
	_, rel, _ := canonical(canon)
	full := path.Join(home, "mail", rel)
	return place{dir: path.Dir(full), name: path.Base(full)}
}

// openDir opens the directory of p as a root (so that the file and its
// dotlock are looked up in it alone, never through a symlink out of it).
func (s *Store) openDir(p place) (*os.Root, error) {
	if p.abs {
		return os.OpenRoot(p.dir)
	}
	return s.root.OpenRoot(p.dir)
}

// mkdirs makes dir (relative to the mail root) and its missing parents,
// mode 0700, fsyncing the parent of each one made. A level that exists
// as something else than a directory is ErrNotAllowed: an mbox folder
// holds messages or folders, not both.
func (s *Store) mkdirs(dir string) error {
	parts := strings.Split(dir, "/")
	for i := range parts {
		d := path.Join(parts[:i+1]...)
		fi, err := s.root.Lstat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%w: %s holds messages, so it cannot hold folders (an mbox folder is a file or a directory, not both)", mailbox.ErrNotAllowed, d)
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("mbox: stat %s: %w", d, err)
		}
		if err := s.root.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("mbox: create %s: %w", d, err)
		}
		if err := s.syncDir(path.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

// syncDir fsyncs dir, relative to the mail root.
func (s *Store) syncDir(dir string) error {
	d, err := s.root.Open(dir)
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		return fmt.Errorf("mbox: sync %s: %w", dir, err)
	}
	return nil
}

// syncRoot fsyncs the directory r is open at.
func syncRoot(r *os.Root) error {
	d, err := r.Open(".")
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	return err
}

// checkFormat refuses a home that holds a Maildir.
func (s *Store) checkFormat(home string) error {
	if s.opts.Converting {
		return nil
	}
	if fi, err := s.root.Lstat(path.Join(home, "Maildir")); err == nil && fi.IsDir() {
		return &mailbox.FormatError{Home: home, Found: "a Maildir (Maildir/)", Format: "mbox"}
	}
	return nil
}

// writer returns the in-process lock of the file at p.
func (s *Store) writer(p place) *sync.Mutex {
	key := p.String()
	if p.abs {
		key = "/" + key
	}
	m, _ := s.writers.LoadOrStore(key, new(sync.Mutex))
	return m.(*sync.Mutex)
}

// lock takes the file at p for writing: this process's lock, then the
// dotlock and the fcntl lock. The file is made (mode 0600) if missing.
func (s *Store) lock(ctx context.Context, p place) (*held, func(), error) {
	dir, err := s.openDir(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !p.abs {
			// Removed behind our back: this delivery fails (4xx), the
			// next one makes the directory again.
			s.ready.Delete(p.dir)
		}
		return nil, nil, fmt.Errorf("mbox: open %s: %w", p.dir, err)
	}
	mu := s.writer(p)
	mu.Lock()
	h, err := lockMbox(ctx, dir, p.name, p.String(), s.opts.Lock)
	if err != nil {
		mu.Unlock()
		dir.Close()
		return nil, nil, err
	}
	return h, func() {
		h.release()
		mu.Unlock()
		dir.Close()
	}, nil
}

// stageMemory is the largest message held in memory between Stage (or
// an APPEND's upload) and the append to its file; a larger one waits in
// an anonymous file in its home. A delivery from the agent is in memory
// already up to the same size (mda's spool), and a file of its own cost
// a 4 KiB message some twenty system calls.
const stageMemory = 1 << 20

// stageBufs are the buffers of messages held in memory, reused: a fresh
// one per message meant fresh pages, and a page's first touch is dear.
var stageBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// spooled is a message taken in before its folder's file is locked.
type spooled struct {
	mem  *bytes.Buffer // the message, if it fits in stageMemory
	file *os.File      // else this anonymous file holds it
	size int64
}

// reader reads the message from its start; each call gives a new reader.
func (sp *spooled) reader() io.Reader {
	if sp.file != nil {
		return io.NewSectionReader(sp.file, 0, sp.size)
	}
	return bytes.NewReader(sp.mem.Bytes())
}

// close lets the message go.
func (sp *spooled) close() error {
	var err error
	if sp.file != nil {
		err = sp.file.Close()
		sp.file = nil
	}
	if sp.mem != nil {
		if sp.mem.Cap() <= 2*stageMemory {
			sp.mem.Reset()
			stageBufs.Put(sp.mem)
		}
		sp.mem = nil
	}
	return err
}

// spool takes r in: into memory up to stageMemory, beyond that into an
// anonymous temporary file in home (made and unlinked at once, so that
// nothing is left after a crash). Nothing is visible in any folder yet,
// and no lock is held while a slow sender or client trickles the message
// in.
func (s *Store) spool(ctx context.Context, home string, r io.Reader) (*spooled, error) {
	cr := &ctxReader{ctx: ctx, r: r}
	buf := stageBufs.Get().(*bytes.Buffer)
	sp := &spooled{mem: buf}
	n, err := buf.ReadFrom(io.LimitReader(cr, stageMemory+1))
	if err != nil {
		sp.close()
		return nil, fmt.Errorf("mbox: spool a message in %s: %w", home, err)
	}
	if n <= stageMemory {
		sp.size = n
		return sp, nil
	}
	defer sp.close() // the buffer: the file takes over
	if err := s.mkdirs(home); err != nil {
		return nil, err
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	name := path.Join(home, ".mailroom-spool-"+hex.EncodeToString(rnd[:]))
	f, err := s.root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("mbox: spool a message in %s: %w", home, err)
	}
	s.root.Remove(name)
	written, err := f.Write(buf.Bytes())
	if err == nil {
		var more int64
		more, err = io.CopyBuffer(f, cr, make([]byte, 64<<10))
		written += int(more)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("mbox: spool a message in %s: %w", home, err)
	}
	return &spooled{file: f, size: int64(written)}, nil
}

// returnPath reads the envelope sender from the Return-Path: field of
// the message r (what mda writes first), for its From line; "" (the
// From line's MAILER-DAEMON) if none.
func returnPath(r io.Reader) string {
	br := bufio.NewReaderSize(io.LimitReader(r, 64<<10), 4096)
	for {
		line, err := br.ReadSlice('\n')
		t := bytes.TrimRight(line, "\r\n")
		if len(t) == 0 {
			return ""
		}
		if name, v, ok := bytes.Cut(t, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("Return-Path")) {
			v = bytes.Trim(bytes.TrimSpace(v), "<>")
			return string(v)
		}
		if err != nil {
			return ""
		}
	}
}

// Staged is a message spooled for one folder of a mail home but not yet
// in it; it implements mailbox.Staged. Commit appends it to the folder's
// file under its locks and fsyncs; Abort takes it back.
type Staged struct {
	s          *Store
	home, name string
	p          place
	msg        *spooled
	from       string
	extra      string // flag fields
	at         int64  // where Commit put its From line
	before     int64  // the file's size before Commit
	end        int64  // and after
	file       os.FileInfo
	committed  bool
	done       bool
}

var _ mailbox.Staged = (*Staged)(nil)

// Stage spools r for home's INBOX.
func (s *Store) Stage(ctx context.Context, home string, r io.Reader) (mailbox.Staged, error) {
	return s.StageFolder(ctx, home, mailbox.Delivery{}, r)
}

// StageSpecial is Stage into home's folder of special use use (such as
// `\Junk`): the one the index has marked so, or else the default folder
// of that use, made if missing.
func (s *Store) StageSpecial(ctx context.Context, home, use string, r io.Reader) (mailbox.Staged, error) {
	if err := checkHome(home); err != nil {
		return nil, err
	}
	name := s.specialFolder(home, use)
	if name == "" {
		name = index.DefaultFolderOf(use)
	}
	if name == "" {
		return nil, fmt.Errorf("mbox: no folder of special use %q", use)
	}
	return s.StageFolder(ctx, home, mailbox.Delivery{Folder: name}, r)
}

// StageFolder is Stage into the folder d.Folder ("" for INBOX) with the
// flags d.Flags, written into the message's Status:, X-Status: and
// X-Keywords: fields. A missing folder is made only with d.Create or for
// the folders every account has (Sent, Drafts, Trash, Junk, Archive);
// otherwise the error wraps mailbox.ErrNoFolder.
func (s *Store) StageFolder(ctx context.Context, home string, d mailbox.Delivery, r io.Reader) (mailbox.Staged, error) {
	if err := checkHome(home); err != nil {
		return nil, err
	}
	canon := inbox
	if d.Folder != "" {
		c, _, err := canonical(d.Folder)
		if err != nil {
			return nil, err
		}
		canon = c
	}
	p := s.place(home, canon)
	if canon != inbox {
		ok, err := s.FolderExists(ctx, home, canon)
		if err != nil {
			return nil, err
		}
		if !ok && !d.Create {
			return nil, fmt.Errorf("mbox: %s: %w", canon, mailbox.ErrNoFolder)
		}
	}
	if err := s.prepare(home, p); err != nil {
		return nil, err
	}
	msg, err := s.spool(ctx, home, r)
	if err != nil {
		return nil, err
	}
	sys, kws := index.ParseFlags(d.Flags)
	return &Staged{s: s, home: home, name: canon, p: p, msg: msg, from: returnPath(msg.reader()), extra: flagFields(sys, kws)}, nil
}

// prepare checks that home is an mbox home and makes the directory of
// the file at p, once: what a delivery found ready stays so for the
// next ones (Store.ready).
func (s *Store) prepare(home string, p place) error {
	key := p.dir
	if p.abs {
		key = home
	}
	if _, ok := s.ready.Load(key); ok {
		return nil
	}
	if err := s.checkFormat(home); err != nil {
		return err
	}
	if !p.abs {
		if err := s.mkdirs(p.dir); err != nil {
			return err
		}
	}
	s.ready.Store(key, struct{}{})
	return nil
}

// FolderExists reports whether home has the folder name, as a file (a
// folder that can hold messages). INBOX and the default folders always
// exist (they are made when first used).
func (s *Store) FolderExists(ctx context.Context, home, name string) (bool, error) {
	if err := checkHome(home); err != nil {
		return false, err
	}
	canon, _, err := canonical(name)
	if err != nil {
		return false, nil
	}
	if canon == inbox || index.IsDefaultFolder(canon) {
		return true, nil
	}
	fi, err := s.root.Lstat(s.place(home, canon).String())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("mbox: stat %s: %w", canon, err)
	}
	return fi.Mode().IsRegular(), nil
}

// Size is the size of the message as spooled.
func (m *Staged) Size() int64 { return m.msg.size }

// Commit appends the message to its folder's file under the file's locks
// and returns once it is fsynced. It is not cancelled by ctx (only the
// lock wait is bounded, by the lock timeout): once the bytes are spooled,
// finishing is cheaper and safer than leaving the outcome unknown.
func (m *Staged) Commit(ctx context.Context) error {
	if m.done || m.committed {
		return nil
	}
	h, unlock, err := m.s.lock(context.WithoutCancel(ctx), m.p)
	if errors.Is(err, fs.ErrNotExist) && !m.p.abs {
		// The directory was removed since Stage found it (lock forgot
		// it): made again.
		if err = m.s.prepare(m.home, m.p); err == nil {
			h, unlock, err = m.s.lock(context.WithoutCancel(ctx), m.p)
		}
	}
	if err != nil {
		return err
	}
	defer unlock()
	n, at, err := h.appendMany(context.WithoutCancel(ctx), []outMessage{{from: fromLine(m.from, time.Now()), r: m.msg.reader(), extra: m.extra}})
	if err != nil {
		return newError(m.p.String(), "write", err)
	}
	// The file, its end, and its size before (n counts the separator
	// written before the From line too).
	m.at, m.committed = at[0], true
	m.file, m.end, m.before = h.fi, h.end, h.end-n
	m.msg.close()
	m.s.changed(m.home, m.name)
	return nil
}

// Abort takes the message back: the spooled copy goes; a committed one
// is cut off the file if it is still the file's last message, and
// otherwise left (a duplicate, the lesser harm, logged).
func (m *Staged) Abort() error {
	if m.done {
		return nil
	}
	m.done = true
	if !m.committed {
		return m.msg.close()
	}
	h, unlock, err := m.s.lock(context.Background(), m.p)
	if err != nil {
		return err
	}
	defer unlock()
	fi, err := h.f.Stat()
	if err != nil {
		return fmt.Errorf("mbox: stat %s: %w", m.p, err)
	}
	if m.file == nil || !os.SameFile(fi, m.file) || fi.Size() != m.end {
		m.s.log.Warn("mbox: a message to take back is no longer last in its file: left there", "mbox", m.p.String(), "offset", m.at)
		return nil
	}
	if err := h.f.Truncate(m.before); err != nil {
		return fmt.Errorf("mbox: take back the message at %d in %s: %w", m.at, m.p, err)
	}
	if err := h.f.Sync(); err != nil {
		return fmt.Errorf("mbox: take back the message at %d in %s: %w", m.at, m.p, err)
	}
	m.s.changed(m.home, m.name)
	return nil
}

// outMessage is one message for appendMany: its From line (without line
// end), its content (LF or CRLF) and the flag fields to add.
type outMessage struct {
	from  string
	r     io.Reader
	extra string
}

// appendBufs are appendMany's write buffers, reused (see stageBufs).
var appendBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// appendMany appends msgs to the held file with one fsync, and returns
// the bytes appended and each one's offset. On failure the file is
// truncated back to its size before.
func (h *held) appendMany(ctx context.Context, msgs []outMessage) (int64, []int64, error) {
	fi, err := h.f.Stat()
	if err != nil {
		return 0, nil, fmt.Errorf("stat: %w", err)
	}
	h.fi = fi
	size := fi.Size()
	fail := func(err error) (int64, []int64, error) {
		if terr := h.f.Truncate(size); terr != nil {
			err = errors.Join(err, fmt.Errorf("truncate back to %d bytes: %w", size, terr))
		} else if serr := h.f.Sync(); serr != nil {
			err = errors.Join(err, fmt.Errorf("sync after truncate: %w", serr))
		}
		return 0, nil, err
	}
	pad, err := padding(h.f, size)
	if err != nil {
		return fail(err)
	}
	cw := &countWriter{w: h.f}
	bw := appendBufs.Get().(*bufio.Writer)
	bw.Reset(cw)
	defer func() {
		bw.Reset(nil)
		appendBufs.Put(bw)
	}()
	bw.WriteString(pad)
	at := make([]int64, len(msgs))
	for i, m := range msgs {
		if err := bw.Flush(); err != nil {
			return fail(err)
		}
		at[i] = size + cw.n
		if err := writeMessage(bw, m.from, &ctxReader{ctx: ctx, r: m.r}, m.extra); err != nil {
			return fail(err)
		}
	}
	if err := h.f.Sync(); err != nil {
		return fail(fmt.Errorf("fsync: %w", err))
	}
	h.end = size + cw.n
	return cw.n, at, nil
}
