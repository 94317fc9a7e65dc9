package maildir

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mailroom/mailbox/index"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A Maildir copied from Dovecot brings its dovecot-uidlist (UIDVALIDITY,
// next UID, and the UID of each file) and dovecot-keywords (the keyword
// each letter a-z in a file name stands for). The first time the index
// sees an account, each folder takes them over, so that IMAP clients keep
// their caches across the move. The uidlist is then renamed to
// dovecot-uidlist.mailroom-imported: it is never imported twice (UIDs we
// hand out after it would clash with a second import), and Dovecot, if
// the Maildir goes back to it, builds a new one under a new UIDVALIDITY,
// as it must since the UIDs have moved on.

const (
	dovecotUIDList  = "dovecot-uidlist"
	dovecotKeywords = "dovecot-keywords"
	importedSuffix  = ".mailroom-imported"
	// maxDovecotFile bounds what is read of either file.
	maxDovecotFile = 64 << 20
)

// uidList is what a dovecot-uidlist says.
type uidList struct {
	uidValidity uint32
	uidNext     uint32
	uids        map[string]uint32 // unique name -> UID
}

var errUIDList = errors.New("unusable dovecot-uidlist")

// parseUIDList reads a dovecot-uidlist of version 1 or 3:
//
//	3 V<uidvalidity> N<nextuid> [G<guid> ...]
//	<uid> [<ext>...] :<file name>
//
//	1 <uidvalidity> <nextuid>
//	<uid> <file name>
//
// UIDs must ascend and stay below the next UID; anything else makes the
// whole file unusable (the folder then gets new UIDs, as with no file).
func parseUIDList(r io.Reader) (*uidList, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	if !sc.Scan() {
		return nil, errUIDList
	}
	hdr := strings.Fields(sc.Text())
	if len(hdr) < 1 {
		return nil, errUIDList
	}
	l := &uidList{uids: map[string]uint32{}}
	version := hdr[0]
	switch version {
	case "1":
		if len(hdr) < 3 {
			return nil, errUIDList
		}
		l.uidValidity = parseUint32(hdr[1])
		l.uidNext = parseUint32(hdr[2])
	case "3":
		for _, f := range hdr[1:] {
			switch f[0] {
			case 'V':
				l.uidValidity = parseUint32(f[1:])
			case 'N':
				l.uidNext = parseUint32(f[1:])
			}
		}
	default:
		return nil, errUIDList
	}
	if l.uidValidity == 0 || l.uidNext == 0 {
		return nil, errUIDList
	}
	var last uint32
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		sp := strings.IndexByte(line, ' ')
		if sp < 0 {
			return nil, errUIDList
		}
		uid := parseUint32(line[:sp])
		var name string
		if version == "3" {
			i := strings.Index(line[sp:], " :")
			if i < 0 {
				return nil, errUIDList
			}
			name = line[sp+i+2:]
		} else {
			name = line[sp+1:]
		}
		key := parseFileName(name).key
		if uid == 0 || uid <= last || uid >= l.uidNext || key == "" || strings.ContainsAny(key, "/\x00") {
			return nil, errUIDList
		}
		if _, dup := l.uids[key]; dup {
			return nil, errUIDList
		}
		last = uid
		l.uids[key] = uid
	}
	if sc.Err() != nil {
		return nil, errUIDList
	}
	return l, nil
}

// parseKeywords reads dovecot-keywords: "<n> <keyword>" per line, letter
// 'a'+n standing for the keyword. Bad lines are skipped.
func parseKeywords(r io.Reader) map[byte]string {
	kw := map[byte]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		n, word, ok := strings.Cut(sc.Text(), " ")
		i, err := strconv.Atoi(n)
		if !ok || err != nil || i < 0 || i >= 26 || !index.ValidKeyword(word) {
			continue
		}
		kw[byte('a'+i)] = word
	}
	return kw
}

func parseUint32(s string) uint32 {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0
	}
	return uint32(v)
}

// dovecotImport is what a folder takes over from Dovecot.
type dovecotImport struct {
	list     *uidList // nil if none or unusable
	keywords map[byte]string
}

// readDovecot reads the Dovecot files of the folder directory dir
// (relative to the mail root). Missing or unusable files give nothing.
func (a *account) readDovecot(dir string) dovecotImport {
	var imp dovecotImport
	read := func(name string, fn func(io.Reader)) {
		f, err := a.openIn(dir, name)
		if err != nil {
			return
		}
		defer f.Close()
		fn(io.LimitReader(f, maxDovecotFile))
	}
	read(dovecotUIDList, func(r io.Reader) {
		if l, err := parseUIDList(r); err == nil {
			imp.list = l
		}
	})
	read(dovecotKeywords, func(r io.Reader) { imp.keywords = parseKeywords(r) })
	return imp
}

// retireUIDList renames the imported dovecot-uidlist out of the way.
func (a *account) retireUIDList(dir string) {
	d, err := a.openDir(dir)
	if err != nil {
		return
	}
	defer d.Close()
	fd := int(d.Fd())
	if unix.Renameat(fd, dovecotUIDList, fd, dovecotUIDList+importedSuffix) == nil {
		d.Sync()
	}
}

// keywordsOf maps a file name's keyword letters through Dovecot's
// keyword list.
func (imp dovecotImport) keywordsOf(other string) []string {
	if len(imp.keywords) == 0 || other == "" {
		return nil
	}
	var words []string
	for i := 0; i < len(other); i++ {
		if w, ok := imp.keywords[other[i]]; ok {
			words = append(words, w)
		}
	}
	_, kws := index.ParseFlags(words)
	return kws
}

// ExportDovecot writes a dovecot-uidlist into every folder of the
// account whose mail home is home, from the index: the folder's
// UIDVALIDITY, its next UID and the UID of each message, in the format
// Dovecot reads (version 3, as the import above takes it). Dovecot, given
// the Maildir next, takes them over as mailroom took over its own, so
// that IMAP clients keep their caches across a move back to Dovecot.
// Each folder is brought up to date with the disk first.
//
// It is for leaving mailroom: an index lost afterwards would import the
// file again, with UIDs that mailroom may have handed out since; so
// nothing must deliver into the Maildir between the export and Dovecot.
// Keywords stay behind (mailroom keeps them in the index, not in the
// file names Dovecot reads them from).
func (ix *Index) ExportDovecot(ctx context.Context, home string) (folders, messages int, err error) {
	fs, err := ix.Open(ctx, home)
	if err != nil {
		return 0, 0, err
	}
	defer fs.Close()
	s := fs.(*session)
	list, err := s.List(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, fo := range list {
		// Durable first: the file must not name a UID the index could
		// still lose.
		if _, err := s.Sync(ctx, fo.Name); err != nil {
			return folders, messages, fmt.Errorf("maildir: export %s of %s: %w", fo.Name, home, err)
		}
		err := s.withFolder(ctx, fo.Name, func(f *folder) error {
			if err := f.need(); err != nil {
				return err
			}
			var b strings.Builder
			fmt.Fprintf(&b, "3 V%d N%d\n", f.uidValidity, f.uidNext)
			for _, e := range f.ents {
				fmt.Fprintf(&b, "%d :%s\n", e.uid, e.key())
			}
			messages += len(f.ents)
			return f.a.writeIn(f.dir, dovecotUIDList, []byte(b.String()))
		})
		if err != nil {
			return folders, messages, fmt.Errorf("maildir: export %s of %s: %w", fo.Name, home, err)
		}
		folders++
	}
	return folders, messages, nil
}
