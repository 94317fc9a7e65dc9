// Package backup writes a backup directory from files that are in use,
// and verifies one.
//
// Mail homes change while they are copied: deliveries add files,
// IMAP sessions rename them (flags, new/ to cur/) and move them between
// folders. A Maildir message file is never rewritten, only renamed, so a
// copy of each one is consistent; what can go wrong is missing one that
// moved. CopyTree therefore finds a file that vanished under its other
// names (the same unique name in new/ or cur/ with other flags) and walks
// the tree a second time for files that moved to a folder already walked.
// Other files (an mbox, .forward) are copied until two stats around the
// copy agree.
//
// Every file is listed with its SHA-256 in MANIFEST, in the format of
// sha256sum(1), so that a copy kept elsewhere can be checked with
// `sha256sum -c MANIFEST` as well as with Verify. The package knows
// nothing of the database: the caller copies it in with AddFile.
package backup

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ManifestName is the file in a backup directory that lists every other
// file with its SHA-256.
const ManifestName = "MANIFEST"

// Writer fills a backup directory.
type Writer struct {
	dir   string
	files map[string]string // relative path -> hex SHA-256
	stats Stats
}

// Create makes dir (which must not exist, or be empty) for a backup.
func Create(dir string) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create backup directory: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("backup directory: %w", err)
	}
	if len(ents) > 0 {
		return nil, fmt.Errorf("backup directory %s is not empty: name a new one", dir)
	}
	return &Writer{dir: dir, files: map[string]string{}}, nil
}

// Dir is the backup directory.
func (w *Writer) Dir() string { return w.dir }

// AddFile records a file the caller wrote into the directory itself (the
// database copy) in the manifest.
func (w *Writer) AddFile(rel string) error {
	f, err := os.Open(filepath.Join(w.dir, rel))
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("read %s: %w", rel, err)
	}
	w.files[filepath.ToSlash(rel)] = hex.EncodeToString(h.Sum(nil))
	return nil
}

// Stats says what the trees copied so far hold.
func (w *Writer) Stats() Stats { return w.stats }

// Forget takes a file the caller removed from the backup out of the
// manifest.
func (w *Writer) Forget(rel string) {
	key := filepath.ToSlash(rel)
	if _, ok := w.files[key]; ok {
		delete(w.files, key)
		w.stats.Files--
		if strings.Contains("/"+key, "/new/") || strings.Contains("/"+key, "/cur/") {
			w.stats.Messages--
		}
	}
}

// Stats says what CopyTree copied.
type Stats struct {
	Files int
	Bytes int64
	// Messages counts the files in Maildir new/ and cur/ directories.
	Messages int
}

// CopyTree copies the tree at src to rel inside the backup directory.
// Maildir tmp/ directories are left out (nothing in them was ever
// acknowledged), and so are files named with skipPrefix, if not empty
// (other half-written files).
func (w *Writer) CopyTree(ctx context.Context, src, rel, skipPrefix string) (Stats, error) {
	c := &treeCopy{w: w, src: src, rel: rel, skip: skipPrefix, done: map[string]bool{}}
	if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
		return Stats{}, nil
	}
	// Two passes: the second takes what moved into a directory after the
	// first had walked it.
	var err error
	for range 2 {
		if err = c.walk(ctx); err != nil {
			break
		}
	}
	w.stats.Files += c.stats.Files
	w.stats.Bytes += c.stats.Bytes
	w.stats.Messages += c.stats.Messages
	return c.stats, err
}

type treeCopy struct {
	w    *Writer
	src  string
	rel  string
	skip string
	// done holds what was copied: relative paths, and for Maildir
	// messages "<account's maildir>\x00<unique name>", so that a message
	// seen again under new flags, in cur/ or in another folder is not
	// copied twice.
	done  map[string]bool
	stats Stats
}

func (c *treeCopy) walk(ctx context.Context) error {
	return filepath.WalkDir(c.src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != c.src {
				return nil // gone since its directory was read
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(c.src, p)
		if d.IsDir() {
			if err := os.MkdirAll(filepath.Join(c.w.dir, c.rel, rel), 0o700); err != nil {
				return err
			}
			if d.Name() == "tmp" && isMaildir(filepath.Dir(p)) {
				return filepath.SkipDir // made, but empty
			}
			return nil
		}
		if !d.Type().IsRegular() || (c.skip != "" && strings.HasPrefix(d.Name(), c.skip)) {
			return nil
		}
		parent := filepath.Base(filepath.Dir(p))
		if (parent == "new" || parent == "cur") && isMaildir(filepath.Dir(filepath.Dir(p))) {
			return c.message(p, rel)
		}
		if c.done[rel] {
			return nil
		}
		if err := c.stable(p, rel); err != nil {
			return err
		}
		c.done[rel] = true
		return nil
	})
}

// message copies a Maildir message, under the name it has by then.
func (c *treeCopy) message(p, rel string) error {
	md := filepath.Dir(filepath.Dir(p))
	unique, _, _ := strings.Cut(filepath.Base(p), ":")
	// One key per account's Maildir (INBOX and its Maildir++ folders):
	// a message moved to another folder keeps its unique name.
	top := md
	for isMaildir(filepath.Dir(top)) {
		top = filepath.Dir(top)
	}
	key := top + "\x00" + unique
	if c.done[key] {
		return nil
	}
	for range 5 {
		err := c.copyFile(p, rel)
		if err == nil {
			c.done[key] = true
			c.stats.Messages++
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		// Renamed for its flags, or from new/ to cur/: find it again.
		if p = findUnique(md, unique); p == "" {
			return nil // expunged (or moved to a folder the next pass reads)
		}
		rel, _ = filepath.Rel(c.src, p)
	}
	return nil
}

// stable copies a file that may be written meanwhile (an mbox) until
// its size and change time are the same before and after the copy.
func (c *treeCopy) stable(p, rel string) error {
	for range 10 {
		before, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := c.copyFile(p, rel); errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		after, err := os.Stat(p)
		if err == nil && after.Size() == before.Size() && after.ModTime().Equal(before.ModTime()) && ctime(after) == ctime(before) {
			return nil
		}
	}
	return fmt.Errorf("%s kept changing while it was copied; run the backup again", p)
}

func ctime(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*unix.Stat_t); ok {
		return st.Ctim.Nano()
	}
	return 0
}

// findUnique returns the path of the message with that unique name in
// maildir md's new/ or cur/, or "".
func findUnique(md, unique string) string {
	for _, sub := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(md, sub))
		if err != nil {
			continue
		}
		for _, e := range ents {
			if u, _, _ := strings.Cut(e.Name(), ":"); u == unique {
				return filepath.Join(md, sub, e.Name())
			}
		}
	}
	return ""
}

func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if st, err := os.Stat(filepath.Join(dir, sub)); err != nil || !st.IsDir() {
			return false
		}
	}
	return true
}

// copyFile copies src to rel (below the tree's place in the backup) and
// records its hash. A file copied before under that name is replaced.
func (c *treeCopy) copyFile(src, rel string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	dstRel := filepath.Join(c.rel, rel)
	dst := filepath.Join(c.w.dir, dstRel)
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = KeepMtime(in, dst)
	}
	if err != nil {
		return fmt.Errorf("backup: copy %s: %w", src, err)
	}
	key := filepath.ToSlash(dstRel)
	if _, ok := c.w.files[key]; !ok {
		c.stats.Files++
	}
	c.stats.Bytes += n
	c.w.files[key] = hex.EncodeToString(h.Sum(nil))
	return nil
}

// KeepMtime gives dst the modification time of src, an open file it
// was copied from. A Maildir message's mtime is its IMAP INTERNALDATE
// (for mailroom's index and for Dovecot alike), so a copy dated the day
// of the backup would move every message to that day; it also lets
// rsync --link-dest see an unchanged message as the same file.
func KeepMtime(src *os.File, dst string) error {
	st, err := src.Stat()
	if err != nil {
		return err
	}
	return os.Chtimes(dst, time.Time{}, st.ModTime())
}

// Close writes the manifest and flushes the whole backup to disk.
func (w *Writer) Close() error {
	names := make([]string, 0, len(w.files))
	for n := range w.files {
		names = append(names, n)
	}
	slices.Sort(names)
	f, err := os.OpenFile(filepath.Join(w.dir, ManifestName), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	bw := bufio.NewWriter(f)
	for _, n := range names {
		bw.WriteString(manifestLine(w.files[n], n))
	}
	err = bw.Flush()
	if err == nil {
		// One syncfs for every file of the backup (they share a file
		// system), rather than an fsync each.
		err = unix.Syncfs(int(f.Fd()))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return nil
}

// manifestLine is one line as sha256sum writes it: a name holding a
// backslash or a newline is escaped, and the line then starts with one.
func manifestLine(sum, name string) string {
	if strings.ContainsAny(name, "\\\n") {
		name = strings.NewReplacer("\\", "\\\\", "\n", "\\n").Replace(name)
		return "\\" + sum + "  " + name + "\n"
	}
	return sum + "  " + name + "\n"
}

// Summary is what Verify found.
type Summary struct {
	Files int
	Bytes int64
}

// Verify reads every file the manifest of the backup in dir lists and
// compares its SHA-256; it also reports files that are there but not
// listed. The first problems found make the error.
func Verify(dir string) (Summary, error) {
	var sum Summary
	f, err := os.Open(filepath.Join(dir, ManifestName))
	if err != nil {
		return sum, fmt.Errorf("%s is not a backup (no %s): %w", dir, ManifestName, err)
	}
	defer f.Close()
	listed := map[string]bool{}
	var problems []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for line := 1; sc.Scan(); line++ {
		want, name, ok := parseManifestLine(sc.Text())
		if !ok || !fs.ValidPath(name) {
			return sum, fmt.Errorf("%s:%d: not a manifest line", filepath.Join(dir, ManifestName), line)
		}
		listed[name] = true
		got, n, err := hashFile(filepath.Join(dir, filepath.FromSlash(name)))
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
		case got != want:
			problems = append(problems, name+": contents differ from when it was backed up")
		}
		sum.Files++
		sum.Bytes += n
	}
	if err := sc.Err(); err != nil {
		return sum, fmt.Errorf("read manifest: %w", err)
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			if rel = filepath.ToSlash(rel); rel != ManifestName && !listed[rel] {
				problems = append(problems, rel+": not in the manifest")
			}
		}
		return nil
	})
	if len(problems) > 0 {
		more := ""
		if len(problems) > 3 {
			more = fmt.Sprintf(" (and %d more)", len(problems)-3)
		}
		return sum, fmt.Errorf("backup %s does not match its manifest: %s%s", dir, strings.Join(problems[:min(3, len(problems))], "; "), more)
	}
	return sum, nil
}

func parseManifestLine(l string) (sum, name string, ok bool) {
	escaped := strings.HasPrefix(l, "\\")
	l = strings.TrimPrefix(l, "\\")
	sum, name, ok = strings.Cut(l, "  ")
	if !ok || len(sum) != 64 {
		return "", "", false
	}
	if escaped {
		name = strings.NewReplacer("\\\\", "\\", "\\n", "\n").Replace(name)
	}
	return sum, path.Clean(name), true
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}
