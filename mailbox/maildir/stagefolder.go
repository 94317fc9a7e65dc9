package maildir

// Delivery into a named folder with flags, for Sieve's fileinto (RFC 5228
// §4.1, :create from RFC 5490 §3.2, :flags from RFC 5232 §5) and its
// mailboxexists test.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"

	"mailroom/mailbox"
	"mailroom/mailbox/index"
)

// StageFolder is Stage into the folder d.Folder of home (its IMAP name,
// "/" between levels; "" or INBOX is the Maildir itself), with the IMAP
// flags and keywords d.Flags. A folder that does not exist is made only
// with d.Create, or if it is one of the folders every account has (Sent,
// Drafts, Trash, Junk, Archive: the index makes them at an account's
// first IMAP session, which may come after its first mail; Dovecot's
// "auto = create" mailboxes behave alike); otherwise the error wraps
// mailbox.ErrNoFolder.
//
// A message with flags is committed into cur/ with its system flags in
// its name, as Dovecot's LDA does; its keywords are kept in the index
// (recorded in mailroom.db before the file becomes visible, so that a
// crash cannot lose them once the delivery is acknowledged).
func (s *Store) StageFolder(ctx context.Context, home string, d mailbox.Delivery, r io.Reader) (mailbox.Staged, error) {
	if err := checkHome(home); err != nil {
		return nil, err
	}
	canon, md := inbox, Maildir(home)
	if d.Folder != "" {
		c, dir, err := folderDir(d.Folder)
		if err != nil {
			return nil, err
		}
		canon = c
		if dir != "" {
			md = path.Join(md, dir)
		}
	}
	if canon != inbox && !d.Create && !index.IsDefaultFolder(canon) {
		ok, err := s.dirExists(md)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("maildir: %s: %w", canon, mailbox.ErrNoFolder)
		}
	}
	st, err := s.stage(ctx, home, canon, md, r)
	if err != nil {
		return nil, err
	}
	m := st.(*Staged)
	m.flags, m.kws = index.ParseFlags(d.Flags)
	return m, nil
}

// FolderExists reports whether home has the folder name (RFC 5490 §3.1).
func (s *Store) FolderExists(ctx context.Context, home, name string) (bool, error) {
	if err := checkHome(home); err != nil {
		return false, err
	}
	canon, dir, err := folderDir(name)
	if err != nil {
		return false, nil // a name that cannot be a folder names none
	}
	if canon == inbox || index.IsDefaultFolder(canon) {
		return true, nil
	}
	return s.dirExists(path.Join(Maildir(home), dir))
}

// dirExists reports whether md is a Maildir (has cur/).
func (s *Store) dirExists(md string) (bool, error) {
	fi, err := s.root.Stat(path.Join(md, "cur"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("maildir: stat %s: %w", md, err)
	}
	return fi.IsDir(), nil
}

// keywordLetters returns the letters that stand for kws in md's
// dovecot-keywords (Dovecot's Maildir keywords: "<n> <keyword>" lines,
// letter 'a'+n), adding the keywords it lacks and writing the file
// durably (write, fsync, rename, fsync the directory). Like Dovecot, a
// folder has at most 26 such keywords; others are not kept in the name.
func (s *Store) keywordLetters(md string, kws []string) (string, error) {
	mu, _ := s.kwLocks.LoadOrStore(md, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	file := path.Join(md, dovecotKeywords)
	known := map[byte]string{}
	if f, err := s.root.Open(file); err == nil {
		known = parseKeywords(io.LimitReader(f, maxDovecotFile))
		f.Close()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("maildir: read %s: %w", file, err)
	}
	var letters []byte
	changed := false
	for _, kw := range kws {
		var letter byte
		for l, w := range known {
			if strings.EqualFold(w, kw) {
				letter = l
			}
		}
		if letter == 0 {
			for l := byte('a'); l <= 'z'; l++ {
				if _, used := known[l]; !used {
					letter, known[l], changed = l, kw, true
					break
				}
			}
		}
		if letter != 0 {
			letters = append(letters, letter)
		}
	}
	if changed {
		var b strings.Builder
		for l := byte('a'); l <= 'z'; l++ {
			if w, ok := known[l]; ok {
				fmt.Fprintf(&b, "%d %s\n", l-'a', w)
			}
		}
		tmp := file + ".tmp." + s.uniqueName()
		f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", fmt.Errorf("maildir: write %s: %w", file, err)
		}
		_, err = f.WriteString(b.String())
		if err == nil {
			err = s.syncFile(int(f.Fd()))
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = s.root.Rename(tmp, file)
		}
		if err == nil {
			err = s.fsyncDir(md)
		}
		if err != nil {
			s.root.Remove(tmp)
			return "", fmt.Errorf("maildir: write %s: %w", file, err)
		}
	}
	return string(letters), nil
}
