package imap

import (
	"strings"

	goimap "github.com/emersion/go-imap/v2"

	"mailroom/mailbox"
)

// systemFlags are the flags every mailbox supports (RFC 9051 §2.3.2),
// without \Recent, which IMAP4rev2 dropped and we never set.
var systemFlags = []string{mailbox.FlagAnswered, mailbox.FlagFlagged, mailbox.FlagDeleted, mailbox.FlagSeen, mailbox.FlagDraft}

const flagRecent = `\Recent`

// canonFlag spells a system flag as IMAP does ("\seen" -> "\Seen");
// keywords are kept as the client wrote them.
func canonFlag(f string) string {
	if strings.HasPrefix(f, `\`) {
		for _, sf := range append(systemFlags, flagRecent) {
			if strings.EqualFold(f, sf) {
				return sf
			}
		}
	}
	return f
}

// hasFlag reports whether flags holds f; flags and keywords are case-
// insensitive (RFC 9051 §2.3.2).
func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// validFlag reports whether f can be written as a flag: a backslash only
// first, then atom characters. A keyword that another program put in the
// Maildir and that IMAP cannot express is left out of responses rather
// than breaking them (the library's encoder fails the whole response).
func validFlag(f string) bool {
	if f == "" || f == `\` {
		return false
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c == '\\' {
			if i != 0 {
				return false
			}
			continue
		}
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"]`, c) >= 0 {
			return false
		}
	}
	return true
}

func validAttr(a string) bool { return strings.HasPrefix(a, `\`) && validFlag(a) }

// imapFlags converts stored flags for a response.
func imapFlags(flags []string) []goimap.Flag {
	return appendIMAPFlags(make([]goimap.Flag, 0, len(flags)), flags)
}

// appendIMAPFlags is imapFlags appending to out.
func appendIMAPFlags(out []goimap.Flag, flags []string) []goimap.Flag {
	for _, f := range flags {
		if validFlag(f) && f != flagRecent {
			out = append(out, goimap.Flag(f))
		}
	}
	return out
}

// flagsOf is a message's FLAGS for this session: \Recent too where the
// message is recent for it and the client speaks IMAP4rev1. The list is
// the session's scratch, valid until the next call: each caller writes it
// out at once, and a FETCH of 100,000 messages allocates no list.
func (s *session) flagsOf(m mailbox.Message) []goimap.Flag {
	f := appendIMAPFlags(s.flagBuf[:0], m.Flags)
	if !s.conn.rev2 && s.recent.has(m.UID) {
		f = append(f, goimap.Flag(flagRecent))
	}
	s.flagBuf = f
	return f
}

// storeFlags converts flags from STORE or APPEND for the store: system
// flags canonical, \Recent dropped (the server alone may set it).
func storeFlags(flags []goimap.Flag) []string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		c := canonFlag(string(f))
		if c == flagRecent || hasFlag(out, c) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// mailboxFlags is the FLAGS response: system flags and the keywords in use.
func mailboxFlags(keywords []string) []goimap.Flag {
	return imapFlags(append(append([]string{}, systemFlags...), keywords...))
}

// keywordsOf adds to known the keywords of flags not in it yet, and
// reports whether it added any.
func keywordsOf(known []string, flags []string) ([]string, bool) {
	added := false
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) || !validFlag(f) || hasFlag(known, f) {
			continue
		}
		known = append(known, f)
		added = true
	}
	return known, added
}
