package maildir

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"mailroom/mailbox"
	"mailroom/mailbox/mutf7"
)

// Folder names. IMAP names are UTF-8 with "/" between levels; on disk a
// folder is the Maildir++ directory "." + levels joined by ".", each level
// in modified UTF-7 (Dovecot's default), so "Archive/2024" lives in
// Maildir/.Archive.2024 and INBOX is the Maildir itself.

const (
	inbox = "INBOX"
	// maxDirName is the longest directory name most file systems take
	// (NAME_MAX).
	maxDirName = 255
)

// badName wraps mailbox.ErrBadFolderName with the reason.
func badName(name, why string) error {
	return fmt.Errorf("%w %q: %s", mailbox.ErrBadFolderName, name, why)
}

// folderDir checks an IMAP folder name and returns its canonical spelling
// (a first level "inbox" in any case becomes "INBOX") and its directory
// name inside the Maildir ("" for INBOX). Anything that could name a path
// outside the Maildir, or that could not come back unchanged from the
// directory name, is refused with mailbox.ErrBadFolderName.
func folderDir(name string) (canon, dir string, err error) {
	switch {
	case name == "":
		return "", "", badName(name, "empty")
	case len(name) > maxDirName:
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
	var b strings.Builder
	for _, l := range levels {
		if l == "" {
			return "", "", badName(name, "empty level")
		}
		for _, r := range l {
			switch {
			case r == '.':
				return "", "", badName(name, `"." in a level`)
			case r == '*' || r == '%':
				return "", "", badName(name, "wildcard in a name")
			case unicode.IsControl(r) || r == utf8.RuneError:
				return "", "", badName(name, "control character")
			}
		}
		enc, err := mutf7.Encode(l)
		if err != nil {
			return "", "", badName(name, err.Error())
		}
		b.WriteByte('.')
		b.WriteString(enc)
	}
	dir = b.String()
	if len(dir) > maxDirName {
		return "", "", badName(name, "too long")
	}
	return strings.Join(levels, "/"), dir, nil
}

// dirFolder is the reverse of folderDir: the IMAP name of a directory found
// in a Maildir, or ok false for a directory that is not a folder we serve
// (tmp, new, cur, a name that is not canonical modified UTF-7).
func dirFolder(dir string) (name string, ok bool) {
	if len(dir) < 2 || dir[0] != '.' {
		return "", false
	}
	levels := strings.Split(dir[1:], ".")
	for i, l := range levels {
		dec, err := mutf7.Decode(l)
		if err != nil {
			return "", false
		}
		levels[i] = dec
	}
	name = strings.Join(levels, "/")
	canon, back, err := folderDir(name)
	if err != nil || back != dir || canon == inbox {
		return "", false
	}
	return canon, true
}
