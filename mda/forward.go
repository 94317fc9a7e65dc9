package mda

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"mailroom/mda/alias"
)

// maxForwardBytes bounds a .forward file; a longer one is ignored.
const maxForwardBytes = 64 << 10

// errIgnoredForward marks a .forward that exists but is not honoured
// (a symlink, another owner, writable by others, not a regular file, too
// big): it is logged and the user gets normal delivery.
var errIgnoredForward = errors.New(".forward ignored")

// readForward returns the content of the .forward in the mail home home
// and its path, nil when there is none. A file that could have been
// planted by someone else is refused with errIgnoredForward: a symlink
// (it might point at /etc/passwd or another user's file), a file not
// owned by the user mailroom runs as (who owns every mail home), or one
// that others may write. Other errors are temporary.
func readForward(mailRoot, home string) ([]byte, string, error) {
	path := filepath.Join(mailRoot, filepath.FromSlash(home), ".forward")
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return nil, path, nil
	case errors.Is(err, syscall.ELOOP):
		return nil, path, fmt.Errorf("%s: %w: it is a symbolic link", path, errIgnoredForward)
	case err != nil:
		return nil, path, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, path, fmt.Errorf("stat %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, path, fmt.Errorf("%s: %w: not a regular file", path, errIgnoredForward)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, path, fmt.Errorf("%s: %w: owned by uid %d, not by mailroom's uid %d", path, errIgnoredForward, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return nil, path, fmt.Errorf("%s: %w: anybody may write it", path, errIgnoredForward)
	}
	var b bytes.Buffer
	n, err := io.Copy(&b, io.LimitReader(f, maxForwardBytes+1))
	if err != nil {
		return nil, path, fmt.Errorf("read %s: %w", path, err)
	}
	if n > maxForwardBytes {
		return nil, path, fmt.Errorf("%s: %w: larger than %d bytes", path, errIgnoredForward, maxForwardBytes)
	}
	return b.Bytes(), path, nil
}

// confineFiles refuses the file targets of .forward files (and of the
// include files they name) that lie outside their owner's mail home:
// mailroom appends to them with its own rights, so allow_files must not
// let a user write to another user's mailbox, the aliases file or the
// database. (A file target's Leaf.Home is set only when a .forward named
// it; the aliases file's are the administrator's and go anywhere.)
// Symlinks inside the home are dealt with at delivery, which opens the
// file through an os.Root of the home.
func (d *Deliverer) confineFiles(n *alias.Node) {
	if l := n.Leaf; l != nil && l.Kind == alias.File && l.Err == nil && userFile(l) {
		if _, ok := d.inHome(l); !ok {
			l.Err = fmt.Errorf("%s: %w: a file named in a .forward must be inside the mail home (%s)",
				l.Path, alias.ErrNotAllowed, d.homeDir(l.Home))
			n.Err = l.Err
		}
	}
	for _, c := range n.Children {
		d.confineFiles(c)
	}
}

// userFile reports whether a file target was named by a user (a
// .forward) and must stay in their mail home. /dev/null, the usual
// "throw it away", writes nothing and is allowed anywhere.
func userFile(l *alias.Leaf) bool {
	return l.Home != "" && l.Path != os.DevNull
}

// homeDir is the directory of a mail home.
func (d *Deliverer) homeDir(home string) string {
	return filepath.Join(d.opts.MailRoot, filepath.FromSlash(home))
}

// inHome returns the path of a .forward's file target relative to its
// owner's mail home, and false if it is not inside it or names a dot
// file at its top (the .forward itself: mail appended there would
// become forwarding rules).
func (d *Deliverer) inHome(l *alias.Leaf) (string, bool) {
	if d.opts.MailRoot == "" {
		return "", false
	}
	home, err := filepath.Abs(d.homeDir(l.Home))
	if err != nil {
		return "", false
	}
	rel, err := filepath.Rel(home, l.Path)
	if err != nil || !filepath.IsLocal(rel) || strings.HasPrefix(rel, ".") {
		return "", false
	}
	return rel, true
}

// openInclude opens an :include: file for expansion. Such a file is
// often kept by someone other than the administrator, so it is opened
// without blocking (a FIFO in its place would otherwise hang every
// session that resolves the alias) and must be a regular file. Errors
// are temporary (see alias.Options.ReadInclude).
func openInclude(path string) (io.ReadCloser, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file (%v)", path, fi.Mode().Type())
	}
	return f, nil
}
