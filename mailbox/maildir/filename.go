package maildir

import (
	"sort"
	"strconv"
	"strings"

	"mailroom/mailbox"
)

// Maildir file names: "<unique>[:2,<flags>]". The unique part never
// changes while a message lives in a folder (mutt, Dovecot and we rename
// only the part after ":"), so it is the key that ties a file to its UID.
// Dovecot puts the size on disk and the size with CRLF line endings in the
// unique part as ",S=<n>" and ",W=<n>", and so does Stage, so that a folder
// can be indexed without reading its files.

// sysFlags is the set of Maildir flag letters that we know, one bit each.
type sysFlags uint8

// The letters of the Maildir spec, in ASCII order (the order they are
// written in). P ("passed": bounced or forwarded) has no IMAP flag; it is
// kept in the file name but not shown.
const (
	flagD sysFlags = 1 << iota // \Draft
	flagF                      // \Flagged
	flagP                      // passed
	flagR                      // \Answered
	flagS                      // \Seen
	flagT                      // \Deleted
)

var flagLetters = [...]struct {
	bit    sysFlags
	letter byte
	imap   string
}{
	{flagD, 'D', mailbox.FlagDraft},
	{flagF, 'F', mailbox.FlagFlagged},
	{flagP, 'P', ""},
	{flagR, 'R', mailbox.FlagAnswered},
	{flagS, 'S', mailbox.FlagSeen},
	{flagT, 'T', mailbox.FlagDeleted},
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

// imapFlags splits IMAP flags into Maildir letters and keywords. Unknown
// system flags (and \Recent, which the server manages) are dropped;
// keywords are deduplicated without regard to case, keeping the first
// spelling, and returned sorted.
func imapFlags(flags []string) (sysFlags, []string) {
	var sys sysFlags
	var kws []string
outer:
	for _, fl := range flags {
		if strings.HasPrefix(fl, `\`) {
			for _, f := range flagLetters {
				if f.imap != "" && strings.EqualFold(fl, f.imap) {
					sys |= f.bit
				}
			}
			continue
		}
		if !validKeyword(fl) {
			continue
		}
		for _, k := range kws {
			if strings.EqualFold(k, fl) {
				continue outer
			}
		}
		kws = append(kws, fl)
	}
	sort.Strings(kws)
	if len(kws) > maxKeywords {
		kws = kws[:maxKeywords:maxKeywords]
	}
	return sys, kws
}

// validKeyword reports whether kw is an IMAP atom (RFC 3501 §9 flag-keyword).
func validKeyword(kw string) bool {
	if kw == "" || len(kw) > 200 {
		return false
	}
	for i := 0; i < len(kw); i++ {
		c := kw[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// maxKeywords is the most keywords one message keeps; a STORE adding more
// keeps the first ones (in sorted order), so that no client can grow an
// index record without bound.
const maxKeywords = 128

// applyFlags computes a message's flags after a STORE.
func applyFlags(sys sysFlags, kws []string, op mailbox.FlagOp, addSys sysFlags, addKw []string) (sysFlags, []string) {
	s, k := applyFlagsUnbounded(sys, kws, op, addSys, addKw)
	if len(k) > maxKeywords {
		k = k[:maxKeywords:maxKeywords]
	}
	return s, k
}

func applyFlagsUnbounded(sys sysFlags, kws []string, op mailbox.FlagOp, addSys sysFlags, addKw []string) (sysFlags, []string) {
	switch op {
	case mailbox.FlagsSet:
		// P has no IMAP name and so survives a replace.
		return addSys | sys&flagP, addKw
	case mailbox.FlagsAdd:
		out := append([]string(nil), kws...)
	add:
		for _, k := range addKw {
			for _, have := range out {
				if strings.EqualFold(have, k) {
					continue add
				}
			}
			out = append(out, k)
		}
		sort.Strings(out)
		return sys | addSys, out
	case mailbox.FlagsRemove:
		var out []string
	keep:
		for _, have := range kws {
			for _, k := range addKw {
				if strings.EqualFold(have, k) {
					continue keep
				}
			}
			out = append(out, have)
		}
		return sys &^ addSys, out
	}
	return sys, kws
}

// sameKeywords compares two sorted keyword lists.
func sameKeywords(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// flagList is the IMAP flags of a message, sorted.
func flagList(sys sysFlags, kws []string) []string {
	out := make([]string, 0, 6+len(kws))
	for _, f := range flagLetters {
		if sys&f.bit != 0 && f.imap != "" {
			out = append(out, f.imap)
		}
	}
	out = append(out, kws...)
	sort.Strings(out)
	return out
}
