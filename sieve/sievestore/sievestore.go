// Package sievestore keeps users' Sieve scripts in their mail homes and
// says which one is active, for delivery (mda), ManageSieve and the
// `mailroom sieve` command alike:
//
//	<mail root>/<home>/sieve/NAME.sieve   a script, as uploaded
//	<mail root>/<home>/sieve/.active      the active script's name (absent: none)
//
// Every write is durable before it returns (temporary file, fsync,
// rename, fsync of the directory), so an acknowledged PUTSCRIPT or
// SETACTIVE survives a crash. All files are reached through an os.Root
// at the mail root, or (the checks for changes at each delivery) through
// openat2 with RESOLVE_BENEATH: no name can lead outside it. It also compiles the
// active script, once per change (Scripts), and remembers vacation
// replies and duplicate ids in mailroom.db (Memory).
package sievestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"mailroom/sieve"
)

// errTooLarge is a script file that cannot be a script: over the size
// limit, or not a regular file. Delivery treats it as a script that does
// not compile (the implicit keep), since retrying cannot help.
var errTooLarge = errors.New("cannot be read as a script")

// Errors of the script store; ManageSieve maps them to its response codes
// (RFC 5804 §1.3).
var (
	// ErrNoScript is a script that does not exist (NONEXISTENT).
	ErrNoScript = fmt.Errorf("no such script: %w", sieve.ErrNotFound)
	// ErrExists is a rename onto a script that exists (ALREADYEXISTS).
	ErrExists = errors.New("a script of that name exists")
	// ErrActive is a deletion of the active script (ACTIVE).
	ErrActive = errors.New("the script is active")
	// ErrBadName is a script name that cannot be a file name here.
	ErrBadName = errors.New("invalid script name")
)

// QuotaError is an upload over a quota (QUOTA/MAXSCRIPTS, QUOTA/MAXSIZE).
type QuotaError struct {
	What string // "MAXSCRIPTS" or "MAXSIZE"
	Msg  string
}

// Error is the message for the user (RFC 5804 §1.3's QUOTA text).
func (e *QuotaError) Error() string { return e.Msg }

// Options configure a Store.
type Options struct {
	// MailRoot is the directory mail homes are relative to.
	MailRoot string
	// MaxScripts bounds the scripts of one user (default 20);
	// MaxScriptSize one script, in octets (default 256 KiB, at most
	// Limits.MaxScriptSize).
	MaxScripts    int
	MaxScriptSize int
	// Limits bound every compiled script and run.
	Limits sieve.Limits
	// GlobalDir holds the scripts include :global names (RFC 6609), ""
	// for none.
	GlobalDir string
	// Separator is the subaddress separator (recipient_delimiter).
	Separator string
	// Before and After are the administrator's scripts (files) that run
	// before and after every user's, as Pigeonhole's sieve_before and
	// sieve_after: with no user script they still run.
	Before, After []string
}

// Store is the scripts of every mail home below a mail root. It is safe
// for concurrent use; writes to one home are serialised.
type Store struct {
	opts  Options
	root  *os.Root
	locks sync.Map // home -> *sync.Mutex
	cache sync.Map // home -> *cached
	size  atomic.Int64
	admin sync.Map // path -> *cached
	// rootDir is the mail root opened for openat2 (scriptdir_linux.go);
	// noOpenat2 is set once the kernel refuses it.
	rootDir   *os.File
	noOpenat2 atomic.Bool
}

// New opens the store.
func New(opts Options) (*Store, error) {
	if opts.MaxScripts <= 0 {
		opts.MaxScripts = 20
	}
	if opts.MaxScriptSize <= 0 {
		opts.MaxScriptSize = 256 << 10
	}
	opts.Limits.MaxScriptSize = max(opts.Limits.MaxScriptSize, opts.MaxScriptSize)
	if err := os.MkdirAll(opts.MailRoot, 0o700); err != nil {
		return nil, fmt.Errorf("sieve scripts: create the mail root: %w", err)
	}
	root, err := os.OpenRoot(opts.MailRoot)
	if err != nil {
		return nil, fmt.Errorf("sieve scripts: open the mail root: %w", err)
	}
	rootDir, err := os.Open(opts.MailRoot)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("sieve scripts: open the mail root: %w", err)
	}
	return &Store{opts: opts, root: root, rootDir: rootDir}, nil
}

// CheckAdmin compiles the administrator's before and after scripts, for
// `mailroom check` and the start of serve: the error names the file,
// line and column.
func (s *Store) CheckAdmin() error {
	var errs []error
	for _, p := range append(slices.Clone(s.opts.Before), s.opts.After...) {
		if _, err := s.adminScript(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// adminScript compiles an administrator's script, again only when the
// file (or one it includes from GlobalDir) changed.
func (s *Store) adminScript(p string) (*sieve.Script, error) {
	sig := globalSignature(p)
	if v, ok := s.admin.Load(p); ok {
		c := v.(*cached)
		if c.active == sig && c.validFiles(scriptDir{s: s, fd: -1, missing: true}) {
			return c.script, c.err
		}
	}
	c := &cached{active: sig, files: map[string]fileSig{}}
	src, err := readFile(p, int64(s.opts.Limits.MaxScriptSize))
	switch {
	case err != nil && transient(err):
		return nil, fmt.Errorf("sieve script %s: %w", p, err) // not kept: tried again
	case err != nil:
		// Gone or unreadable for good: like a script that does not
		// compile, it is skipped and logged by each delivery, which
		// goes on (`mailroom check` refuses it).
		c.err = &sieve.Error{Script: p, Msg: err.Error()}
	}
	var seen []sieve.Dep
	if err == nil {
		c.script, c.err = sieve.Compile(src, sieve.Options{
			Name: p, Self: p, SelfLocation: sieve.Global,
			Loader: loader{s: s, seen: &seen}, Limits: s.opts.Limits, Separator: s.opts.Separator,
		})
		var se *sieve.Error
		if c.err != nil && !errors.As(c.err, &se) {
			return nil, c.err // trouble reading what it includes: not kept
		}
	}
	if c.script != nil {
		seen = c.script.Deps()
	}
	if s.opts.GlobalDir != "" {
		// A script that failed is compiled again when what it
		// included changes, as one that compiled.
		for _, d := range seen {
			g := path.Join(s.opts.GlobalDir, d.Name+suffix)
			c.files["global:"+g] = globalSignature(g)
		}
	}
	s.admin.Store(p, c)
	return c.script, c.err
}

// Sequence returns the scripts a delivery into home runs: the before
// scripts, the user's active one, the after scripts. A script that does
// not compile is left out and its error returned with the rest, so that
// delivery logs it and goes on (the message is never lost to a typo).
func (s *Store) Sequence(ctx context.Context, home string) ([]*sieve.Script, error) {
	var out []*sieve.Script
	var errs []error
	add := func(sc *sieve.Script, err error) {
		if err != nil {
			errs = append(errs, err)
		} else if sc != nil {
			out = append(out, sc)
		}
	}
	for _, p := range s.opts.Before {
		add(s.adminScript(p))
	}
	user, err := s.Scripts(ctx, home)
	var se *sieve.Error
	if err != nil && !errors.As(err, &se) {
		return nil, err // the store's trouble, not the script's
	}
	add(user, err)
	for _, p := range s.opts.After {
		add(s.adminScript(p))
	}
	return out, errors.Join(errs...)
}

// Close releases the mail root.
func (s *Store) Close() error { return errors.Join(s.root.Close(), s.rootDir.Close()) }

// Limits are the limits scripts are compiled with.
func (s *Store) Limits() sieve.Limits { return s.opts.Limits }

// MaxScriptSize is the largest script a user may store.
func (s *Store) MaxScriptSize() int { return s.opts.MaxScriptSize }

const (
	dirName    = "sieve"
	activeFile = ".active"
	suffix     = ".sieve"
)

// CheckName refuses names that cannot be stored: RFC 5804 §1.6 allows any
// UTF-8 without controls; here a name is also a file name, so no "/", no
// leading ".", and at most 128 octets.
func CheckName(name string) error {
	switch {
	case name == "", len(name) > 128, !utf8.ValidString(name):
		return fmt.Errorf("%w %q", ErrBadName, name)
	case strings.HasPrefix(name, "."), strings.ContainsAny(name, "/\\"):
		return fmt.Errorf("%w %q: no \"/\" and no leading \".\"", ErrBadName, name)
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == 0x2028 || r == 0x2029 {
			return fmt.Errorf("%w %q: control character", ErrBadName, name)
		}
	}
	return nil
}

func checkHome(home string) error {
	if home == "" || path.IsAbs(home) || path.Clean(home) != home || strings.HasPrefix(home, "..") || strings.ContainsAny(home, "\x00\\") {
		return fmt.Errorf("sieve scripts: invalid mail home %q", home)
	}
	for _, elem := range strings.Split(home, "/") {
		if elem == ".." || elem == "." || strings.HasPrefix(elem, ".") {
			return fmt.Errorf("sieve scripts: invalid mail home %q", home)
		}
	}
	return nil
}

func (s *Store) lock(home string) func() {
	mu, _ := s.locks.LoadOrStore(home, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	return mu.(*sync.Mutex).Unlock
}

func scriptPath(home, name string) string { return path.Join(home, dirName, name+suffix) }

// Script is one stored script.
type Script struct {
	Name   string
	Active bool
	Size   int64
}

// List returns home's scripts, sorted by name.
func (s *Store) List(home string) ([]Script, error) {
	if err := checkHome(home); err != nil {
		return nil, err
	}
	active, err := s.Active(home)
	if err != nil {
		return nil, err
	}
	return s.list(home, active)
}

func (s *Store) list(home, active string) ([]Script, error) {
	d, err := s.root.Open(path.Join(home, dirName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sieve scripts: %w", err)
	}
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("sieve scripts: read %s: %w", path.Join(home, dirName), err)
	}
	var out []Script
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), suffix)
		if !ok || !e.Type().IsRegular() || CheckName(name) != nil {
			continue
		}
		var size int64
		if fi, err := e.Info(); err == nil {
			size = fi.Size()
		}
		out = append(out, Script{Name: name, Active: name == active, Size: size})
	}
	slices.SortFunc(out, func(a, b Script) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Get returns a script's source.
func (s *Store) Get(home, name string) ([]byte, error) {
	if err := checkHome(home); err != nil {
		return nil, err
	}
	if err := CheckName(name); err != nil {
		return nil, err
	}
	b, err := s.read(scriptPath(home, name), int64(s.opts.Limits.MaxScriptSize))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%q: %w", name, ErrNoScript)
	}
	return b, err
}

func (s *Store) read(p string, max int64) ([]byte, error) {
	f, err := s.root.OpenFile(p, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	return readOpen(f, p, max)
}

// readFile is read for a file outside the mail root (GlobalDir).
func readFile(p string, max int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	return readOpen(f, p, max)
}

func readOpen(f *os.File, p string, max int64) ([]byte, error) {
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file", errTooLarge)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("sieve scripts: read %s: %w", p, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: larger than %d octets", errTooLarge, max)
	}
	return b, nil
}

// Active returns the name of home's active script, "" if none.
func (s *Store) Active(home string) (string, error) {
	if err := checkHome(home); err != nil {
		return "", err
	}
	b, err := s.read(path.Join(home, dirName, activeFile), 512)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errTooLarge) {
		return "", nil // not written by us: no script is active
	}
	if err != nil {
		return "", err
	}
	name := strings.TrimSpace(string(b))
	if CheckName(name) != nil {
		return "", nil
	}
	return name, nil
}

// Check compiles src as home's script name would be compiled, without
// storing it; a bad script gets a *sieve.Error with its line and column.
func (s *Store) Check(home, name string, src []byte) error {
	if err := checkHome(home); err != nil {
		return err
	}
	_, err := sieve.Compile(src, s.compileOptions(home, name))
	return err
}

func (s *Store) compileOptions(home, name string) sieve.Options {
	return sieve.Options{
		Name: name, Self: name, SelfLocation: sieve.Personal,
		Loader:    loader{s: s, home: home},
		Limits:    s.opts.Limits,
		Separator: s.opts.Separator,
	}
}

// loader reads included scripts: :personal from the home, :global from
// GlobalDir.
type loader struct {
	s    *Store
	home string
	// seen, if not nil, gets every script asked for, so that a cached
	// compile error is dropped when one of them changes.
	seen *[]sieve.Dep
}

func (l loader) Load(loc sieve.Location, name string) ([]byte, error) {
	if l.seen != nil {
		*l.seen = append(*l.seen, sieve.Dep{Location: loc, Name: name})
	}
	if err := CheckName(name); err != nil {
		// No such script can exist: the include is the script's error.
		return nil, fmt.Errorf("%w: %w", sieve.ErrNotFound, err)
	}
	if loc == sieve.Global {
		if l.s.opts.GlobalDir == "" {
			return nil, fmt.Errorf("no global scripts here: %w", sieve.ErrNotFound)
		}
		b, err := readFile(path.Join(l.s.opts.GlobalDir, name+suffix), int64(l.s.opts.Limits.MaxScriptSize))
		return b, loadError(err)
	}
	if l.home == "" {
		// An administrator's script has no personal scripts.
		return nil, fmt.Errorf("an administrator's script includes only :global scripts: %w", sieve.ErrNotFound)
	}
	b, err := l.s.read(scriptPath(l.home, name), int64(l.s.opts.Limits.MaxScriptSize))
	return b, loadError(err)
}

// loadError tells sieve.Compile which errors are the script's: a missing
// one, or one that can never be read (too large, not a file, a symbolic
// link that loops or leads out of the mail root, no permission); only
// the errors that another try may not meet (the disk, the process out
// of files or memory) are trouble to try again, since deferring mail for
// a state that lasts would end in a bounce days later.
func loadError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return sieve.ErrNotFound
	case transient(err):
		return err
	}
	return fmt.Errorf("%w: %w", sieve.ErrUnusable, err)
}

// transient reports the errors of reading a file that may pass.
func transient(err error) bool {
	for _, e := range []syscall.Errno{syscall.EIO, syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM,
		syscall.EAGAIN, syscall.EINTR, syscall.ETIMEDOUT, syscall.ESTALE, syscall.EBUSY} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// HaveSpace reports whether home may store a script name of size octets
// (RFC 5804 §2.3): nil, or a *QuotaError.
func (s *Store) HaveSpace(home, name string, size int64) error {
	if err := checkHome(home); err != nil {
		return err
	}
	if err := CheckName(name); err != nil {
		return err
	}
	if size > int64(s.opts.MaxScriptSize) {
		return &QuotaError{What: "MAXSIZE", Msg: fmt.Sprintf("a script may have at most %d octets", s.opts.MaxScriptSize)}
	}
	list, err := s.list(home, "")
	if err != nil {
		return err
	}
	exists := slices.ContainsFunc(list, func(x Script) bool { return x.Name == name })
	if !exists && len(list) >= s.opts.MaxScripts {
		return &QuotaError{What: "MAXSCRIPTS", Msg: fmt.Sprintf("at most %d scripts per user", s.opts.MaxScripts)}
	}
	return nil
}

// Put stores a script after compiling it (RFC 5804 §2.6: a script that
// does not compile is refused, with the error).
func (s *Store) Put(home, name string, src []byte) error {
	if err := s.HaveSpace(home, name, int64(len(src))); err != nil {
		return err
	}
	if err := s.Check(home, name, src); err != nil {
		return err
	}
	defer s.lock(home)()
	if err := s.HaveSpace(home, name, int64(len(src))); err != nil {
		return err
	}
	return s.write(home, name+suffix, src)
}

// write replaces home/sieve/file durably.
func (s *Store) write(home, file string, data []byte) error {
	dir := path.Join(home, dirName)
	if err := s.mkdir(home); err != nil {
		return err
	}
	tmp := path.Join(dir, ".tmp."+strconv.FormatInt(time.Now().UnixNano(), 36)+"."+strconv.Itoa(os.Getpid()))
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("sieve scripts: write %s: %w", path.Join(dir, file), err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.root.Rename(tmp, path.Join(dir, file))
	}
	if err == nil {
		err = s.syncDir(dir)
	}
	if err != nil {
		s.root.Remove(tmp)
		return fmt.Errorf("sieve scripts: write %s: %w", path.Join(dir, file), err)
	}
	s.forget(home)
	return nil
}

// mkdir makes home/sieve (and home, for a user who never got mail).
func (s *Store) mkdir(home string) error {
	parts := strings.Split(path.Join(home, dirName), "/")
	for i := range parts {
		p := path.Join(parts[:i+1]...)
		err := s.root.Mkdir(p, 0o700)
		if err == nil {
			if err := s.syncDir(path.Dir(p)); err != nil {
				return err
			}
		} else if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("sieve scripts: create %s: %w", p, err)
		}
	}
	return nil
}

func (s *Store) syncDir(dir string) error {
	d, err := s.root.Open(dir)
	if err != nil {
		return fmt.Errorf("sieve scripts: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sieve scripts: sync %s: %w", dir, err)
	}
	return nil
}

func (s *Store) remove(home, file string) error {
	dir := path.Join(home, dirName)
	if err := s.root.Remove(path.Join(dir, file)); err != nil {
		return err
	}
	s.forget(home)
	return s.syncDir(dir)
}

// SetActive makes name the active script; "" leaves none active
// (RFC 5804 §2.8).
func (s *Store) SetActive(home, name string) error {
	if err := checkHome(home); err != nil {
		return err
	}
	defer s.lock(home)()
	if name == "" {
		err := s.remove(home, activeFile)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if err := CheckName(name); err != nil {
		return err
	}
	if _, err := s.root.Stat(scriptPath(home, name)); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%q: %w", name, ErrNoScript)
	} else if err != nil {
		return fmt.Errorf("sieve scripts: %w", err)
	}
	return s.write(home, activeFile, []byte(name+"\n"))
}

// Delete removes a script that is not active (RFC 5804 §2.10).
func (s *Store) Delete(home, name string) error {
	if err := checkHome(home); err != nil {
		return err
	}
	if err := CheckName(name); err != nil {
		return err
	}
	defer s.lock(home)()
	active, err := s.Active(home)
	if err != nil {
		return err
	}
	if active == name {
		return fmt.Errorf("%q: %w", name, ErrActive)
	}
	err = s.remove(home, name+suffix)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%q: %w", name, ErrNoScript)
	}
	return err
}

// Rename renames a script, and keeps it active if it was (RFC 5804 §2.11.1).
func (s *Store) Rename(home, oldName, newName string) error {
	if err := checkHome(home); err != nil {
		return err
	}
	if err := CheckName(oldName); err != nil {
		return err
	}
	if err := CheckName(newName); err != nil {
		return err
	}
	defer s.lock(home)()
	if _, err := s.root.Stat(scriptPath(home, oldName)); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%q: %w", oldName, ErrNoScript)
	}
	if _, err := s.root.Stat(scriptPath(home, newName)); err == nil {
		return fmt.Errorf("%q: %w", newName, ErrExists)
	}
	active, err := s.Active(home)
	if err != nil {
		return err
	}
	if err := s.root.Rename(scriptPath(home, oldName), scriptPath(home, newName)); err != nil {
		return fmt.Errorf("sieve scripts: rename: %w", err)
	}
	if err := s.syncDir(path.Join(home, dirName)); err != nil {
		return err
	}
	s.forget(home)
	if active == oldName {
		return s.write(home, activeFile, []byte(newName+"\n"))
	}
	return nil
}

// Scripts returns home's active script compiled, nil if it has none. The
// compiled form is kept and used again while the script, the file naming
// it active and every script it includes stay as they were on disk.
func (s *Store) Scripts(ctx context.Context, home string) (*sieve.Script, error) {
	if err := checkHome(home); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir := s.openScriptDir(home)
	defer dir.close()
	sig := dir.sig(activeFile)
	if sig == (fileSig{}) {
		return nil, nil // no active script: the common case, one openat2
	}
	if v, ok := s.cache.Load(home); ok {
		c := v.(*cached)
		if c.active == sig && c.validFiles(dir) {
			return c.script, c.err
		}
	}
	active, err := s.Active(home)
	if err != nil || active == "" {
		return nil, err
	}
	c := &cached{active: sig, files: map[string]fileSig{}}
	main := scriptPath(home, active)
	c.files[personal+active+suffix] = dir.sig(active + suffix)
	src, err := s.read(main, int64(s.opts.Limits.MaxScriptSize))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Named active but gone (removed by hand): no filtering.
		return nil, nil
	case errors.Is(err, errTooLarge), err != nil && !transient(err):
		// A state that lasts (a looping link, no permission): the
		// script's error, not one to defer mail for (loadError).
		c.err = &sieve.Error{Script: active, Msg: err.Error()}
	case err != nil:
		return nil, err
	default:
		opts := s.compileOptions(home, active)
		var seen []sieve.Dep
		opts.Loader = loader{s: s, home: home, seen: &seen}
		c.script, c.err = sieve.Compile(src, opts)
		var se *sieve.Error
		if c.err != nil && !errors.As(c.err, &se) {
			// Trouble reading an included script: not cached, the
			// delivery is tried again.
			return nil, fmt.Errorf("sieve scripts of %s: %w", home, c.err)
		}
		if c.script != nil {
			seen = c.script.Deps()
		}
		for _, d := range seen {
			if d.Location == sieve.Personal {
				c.files[personal+d.Name+suffix] = dir.sig(d.Name + suffix)
			} else if s.opts.GlobalDir != "" {
				p := path.Join(s.opts.GlobalDir, d.Name+suffix)
				c.files["global:"+p] = globalSignature(p)
			}
		}
	}
	if s.size.Add(1) > maxCached {
		s.cache.Range(func(k, _ any) bool { s.cache.Delete(k); return true })
		s.size.Store(1)
	}
	s.cache.Store(home, c)
	return c.script, c.err
}

// maxCached bounds the compiled scripts kept; past it the cache starts
// again empty (scripts compile in well under a millisecond).
const maxCached = 10000

type cached struct {
	active fileSig
	// files are the signatures of the scripts read: "personal:NAME.sieve"
	// in the home's script directory, "global:PATH" outside the mail root.
	files  map[string]fileSig
	script *sieve.Script
	err    error
}

// fileSig tells whether a file changed: zero for a missing file.
type fileSig struct {
	ino, size int64
	mtime     int64
}

func sigOf(fi fs.FileInfo) fileSig {
	sig := fileSig{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		sig.ino = int64(st.Ino)
	}
	return sig
}

func (s *Store) signature(p string) fileSig {
	fi, err := s.root.Stat(p)
	if err != nil {
		return fileSig{}
	}
	return sigOf(fi)
}

func globalSignature(p string) fileSig {
	fi, err := os.Stat(p)
	if err != nil {
		return fileSig{}
	}
	return sigOf(fi)
}

const personal = "personal:"

// scriptDir is a home's script directory held open while a delivery
// checks whether its files changed (scriptdir_linux.go).
type scriptDir struct {
	s       *Store
	home    string
	fd      int  // -1: through os.Root
	missing bool // no such directory
}

func scriptDirPath(home, name string) string { return path.Join(home, dirName, name) }

// validFiles reports whether the files the script was compiled from
// are as they were; dir is the home's script directory.
func (c *cached) validFiles(dir scriptDir) bool {
	for p, sig := range c.files {
		var now fileSig
		if g, ok := strings.CutPrefix(p, "global:"); ok {
			now = globalSignature(g)
		} else if name, ok := strings.CutPrefix(p, personal); ok {
			now = dir.sig(name)
		} else {
			return false
		}
		if now != sig {
			return false
		}
	}
	return true
}

func (s *Store) forget(home string) { s.cache.Delete(home) }
