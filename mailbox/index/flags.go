// Package index holds what a store's IMAP index needs whatever the
// format of its files (Maildir, mbox): the system flags and keywords of a
// message and how STORE changes them, and the shape of the index in
// mailroom.db that both stores share (Tree: homes, subscriptions, special
// use, UIDVALIDITY, a bucket of records per folder). It knows nothing of
// files, nor of what a folder's records hold, which the stores keep.
package index

import (
	"sort"
	"strings"

	"mailroom/mailbox"
)

// Flags is a message's system flags, one bit each. The bits are stored
// in index records as they are: their values never change.
type Flags uint8

const (
	Draft    Flags = 1 << iota // \Draft (Maildir D)
	Flagged                    // \Flagged (F)
	Passed                     // bounced or forwarded (Maildir P); no IMAP flag, kept but not shown
	Answered                   // \Answered (R)
	Seen                       // \Seen (S)
	Deleted                    // \Deleted (T)
)

// imapNames are the IMAP spellings of the flags that have one, in the
// order of their bits.
var imapNames = [...]struct {
	bit  Flags
	name string
}{
	{Draft, mailbox.FlagDraft},
	{Flagged, mailbox.FlagFlagged},
	{Answered, mailbox.FlagAnswered},
	{Seen, mailbox.FlagSeen},
	{Deleted, mailbox.FlagDeleted},
}

// ParseFlags splits IMAP flags into system flags and keywords. Unknown
// system flags (and \Recent, which the server manages) are dropped;
// keywords are deduplicated without regard to case, keeping the first
// spelling, and returned sorted.
func ParseFlags(flags []string) (Flags, []string) {
	var sys Flags
	var kws []string
outer:
	for _, fl := range flags {
		if strings.HasPrefix(fl, `\`) {
			for _, f := range imapNames {
				if strings.EqualFold(fl, f.name) {
					sys |= f.bit
				}
			}
			continue
		}
		if !ValidKeyword(fl) {
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
	if len(kws) > MaxKeywords {
		kws = kws[:MaxKeywords:MaxKeywords]
	}
	return sys, kws
}

// ValidKeyword reports whether kw is an IMAP atom (RFC 3501 §9 flag-keyword).
func ValidKeyword(kw string) bool {
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

// MaxKeywords is the most keywords one message keeps; a STORE adding more
// keeps the first ones (in sorted order), so that no client can grow an
// index record without bound.
const MaxKeywords = 128

// Apply computes a message's flags after a STORE.
func Apply(sys Flags, kws []string, op mailbox.FlagOp, addSys Flags, addKw []string) (Flags, []string) {
	s, k := applyUnbounded(sys, kws, op, addSys, addKw)
	if len(k) > MaxKeywords {
		k = k[:MaxKeywords:MaxKeywords]
	}
	return s, k
}

func applyUnbounded(sys Flags, kws []string, op mailbox.FlagOp, addSys Flags, addKw []string) (Flags, []string) {
	switch op {
	case mailbox.FlagsSet:
		// P has no IMAP name and so survives a replace.
		return addSys | sys&Passed, addKw
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

// SameKeywords compares two sorted keyword lists.
func SameKeywords(a, b []string) bool {
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

// List is the IMAP flags of a message, sorted.
func List(sys Flags, kws []string) []string {
	out := make([]string, 0, 6+len(kws))
	for _, f := range imapNames {
		if sys&f.bit != 0 {
			out = append(out, f.name)
		}
	}
	out = append(out, kws...)
	sort.Strings(out)
	return out
}

// Change is one STORE's change of flags (RFC 9051 §6.4.6), its flags
// parsed once for every message it names.
type Change struct {
	op  mailbox.FlagOp
	sys Flags
	kws []string
}

// NewChange parses a STORE's flags.
func NewChange(op mailbox.FlagOp, flags []string) Change {
	sys, kws := ParseFlags(flags)
	return Change{op: op, sys: sys, kws: kws}
}

// To returns a message's flags after the change, and whether they differ
// from sys and kws (a message whose flags stay gets no new modseq).
func (c Change) To(sys Flags, kws []string) (Flags, []string, bool) {
	nsys, nkw := Apply(sys, kws, c.op, c.sys, c.kws)
	return nsys, nkw, nsys != sys || !SameKeywords(nkw, kws)
}
