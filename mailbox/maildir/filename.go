package maildir

import (
	"sort"
	"strconv"
	"strings"

	"mailroom/mailbox/index"
)

// Maildir file names: "<unique>[:2,<flags>]". The unique part never
// changes while a message lives in a folder (mutt, Dovecot and we rename
// only the part after ":"), so it is the key that ties a file to its UID.
// Dovecot puts the size on disk and the size with CRLF line endings in the
// unique part as ",S=<n>" and ",W=<n>", and so does Stage, so that a folder
// can be indexed without reading its files.

// sysFlags is a message's system flags (index.Flags), which Maildir
// names carry as letters.
type sysFlags = index.Flags

// The flags under the letters of the Maildir spec.
const (
	flagD = index.Draft
	flagF = index.Flagged
	flagP = index.Passed // no IMAP flag: kept in the file name, not shown
	flagR = index.Answered
	flagS = index.Seen
	flagT = index.Deleted
)

// flagLetters are the Maildir letters, in ASCII order (the order they
// are written in).
var flagLetters = [...]struct {
	bit    sysFlags
	letter byte
}{
	{flagD, 'D'}, {flagF, 'F'}, {flagP, 'P'}, {flagR, 'R'}, {flagS, 'S'}, {flagT, 'T'},
}

// fileName is a parsed Maildir file name.
type fileName struct {
	key     string   // the unique part, before ":"
	sizeS   int64    // ",S=": bytes on disk; -1 if absent
	sizeW   int64    // ",W=": bytes with CRLF line endings; -1 if absent
	hasInfo bool     // ":2," present
	flags   sysFlags // known flag letters after ":2,"
	other   string   // other letters after ":2," (Dovecot keywords a-z), sorted
}

// parseFileName parses a Maildir file name. It never fails: a name
// without ":2," has no flags, and malformed S=/W= fields are ignored (the
// sizes are then learnt from the file).
func parseFileName(name string) fileName {
	fn := fileName{key: name, sizeS: -1, sizeW: -1}
	if i := strings.IndexByte(name, ':'); i >= 0 {
		fn.key = name[:i]
		if info, ok := strings.CutPrefix(name[i+1:], "2,"); ok {
			fn.hasInfo = true
			var other []byte
		letters:
			for k := 0; k < len(info); k++ {
				c := info[k]
				for _, f := range flagLetters {
					if c == f.letter {
						fn.flags |= f.bit
						continue letters
					}
				}
				if (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') && !strings.ContainsRune(string(other), rune(c)) {
					other = append(other, c)
				}
			}
			sort.Slice(other, func(a, b int) bool { return other[a] < other[b] })
			fn.other = string(other)
		}
	}
	// The size fields follow the first "," of the unique part.
	_, rest, _ := strings.Cut(fn.key, ",")
	for rest != "" {
		var f string
		f, rest, _ = strings.Cut(rest, ",")
		if len(f) < 3 || f[1] != '=' {
			continue
		}
		n, err := strconv.ParseInt(f[2:], 10, 64)
		if err != nil || n < 0 {
			continue
		}
		switch f[0] {
		case 'S':
			fn.sizeS = n
		case 'W':
			fn.sizeW = n
		}
	}
	return fn
}

// infoSuffix is ":2," and the flag letters in ASCII order, known ones and
// other alike.
func infoSuffix(flags sysFlags, other string) string {
	b := make([]byte, 0, 3+len(flagLetters)+len(other))
	b = append(b, ":2,"...)
	var letters []byte
	for _, f := range flagLetters {
		if flags&f.bit != 0 {
			letters = append(letters, f.letter)
		}
	}
	letters = append(letters, other...)
	sort.Slice(letters, func(a, b int) bool { return letters[a] < letters[b] })
	return string(append(b, letters...))
}
