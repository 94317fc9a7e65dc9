package sieve

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"mime/quotedprintable"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// ReplyOptions describe the delivery a vacation reply answers.
type ReplyOptions struct {
	// Sender is the envelope sender of the message: the reply goes to
	// it (RFC 5230 §4.5, RFC 3834 §4).
	Sender string
	// Recipient is the envelope recipient the script ran for.
	Recipient string
	// Own lists the user's other addresses: the account's, and those of
	// aliases that deliver to it (the address the message came to).
	Own []string
	// Delivers, if set, reports whether an address of the message's To,
	// Cc or Bcc that is none of the above reaches the user all the same
	// (an alias, a list of local people that includes the user): RFC
	// 5230 §4.5's "user's addresses" are all that deliver to the user.
	// It is asked about at most maxDeliversAsked addresses.
	Delivers func(addr string) bool
	// Hostname names this host in the reply's Message-ID.
	Hostname string
	Now      time.Time
}

// CheckReply decides whether a reply may be sent, with RFC 3834's rules
// as Pigeonhole applies them. It returns the address the reply comes
// from, or a reason (for the log) not to reply. Whether this sender was
// already answered within the period is the caller's to check, with
// MemoryKey.
func (v Vacation) CheckReply(m *Message, o ReplyOptions) (from, skip string) {
	switch {
	case o.Recipient == "":
		return "", "the envelope recipient is <>"
	case o.Sender == "":
		// RFC 5230 §4.5: never to the null sender.
		return "", "the envelope sender is <>"
	}
	// RFC 5230 §4.5: the user's addresses are the recipient's, the
	// account's and aliases' (Own) and those of :addresses, which a
	// script may write as "Name <addr>" or with spaces; :from is one
	// too (as Pigeonhole counts it), for a reply to it would go to the
	// user.
	own := append([]string{o.Recipient}, o.Own...)
	for _, a := range v.Addresses {
		if addr, ok := parseRedirectAddress(a); ok {
			own = append(own, addr)
		}
	}
	mine := own
	if addr, ok := parseRedirectAddress(v.From); ok {
		mine = append(slices.Clip(own), addr)
	}
	for _, a := range mine {
		if sameAddress(a, o.Sender) {
			return "", "the sender is one of the user's own addresses"
		}
	}
	// RFC 3834 §2, RFC 2369 and RFC 2919: not to mailing lists.
	for _, h := range []string{"list-id", "list-owner", "list-subscribe", "list-post", "list-unsubscribe", "list-help", "list-archive"} {
		if m.has(h) {
			return "", "the message comes from a mailing list (" + h + ")"
		}
	}
	// RFC 3834 §5: not to automatic messages.
	for _, i := range m.byName["auto-submitted"] {
		if v := strings.TrimSpace(m.fields[i].raw); !strings.EqualFold(stripParams(v), "no") {
			return "", "the message is Auto-Submitted: " + v
		}
	}
	for _, i := range m.byName["precedence"] {
		switch strings.ToLower(strings.TrimSpace(m.fields[i].raw)) {
		case "junk", "bulk", "list":
			return "", "the message has Precedence: " + m.fields[i].raw
		}
	}
	for _, i := range m.byName["x-auto-response-suppress"] {
		for _, f := range strings.Split(m.fields[i].raw, ",") {
			if f = strings.TrimSpace(f); strings.EqualFold(f, "all") || strings.EqualFold(f, "oof") {
				return "", "the message has X-Auto-Response-Suppress: " + f
			}
		}
	}
	if systemAddress(o.Sender) {
		return "", "the sender is a system address"
	}
	// RFC 5230 §4.5: only to messages addressed to the user.
	var others []string
	for _, h := range []string{"to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"} {
		for _, i := range m.byName[h] {
			for _, a := range parseAddressList(m.fields[i].raw) {
				if a.invalid || a.empty {
					continue
				}
				addr := unquoteLocal(a.local) + "@" + a.domain
				for _, mine := range own {
					if sameAddress(addr, mine) {
						return mine, ""
					}
				}
				if len(others) < maxDeliversAsked {
					others = append(others, addr)
				}
			}
		}
	}
	if o.Delivers != nil {
		for _, addr := range others {
			if o.Delivers(addr) {
				return addr, ""
			}
		}
	}
	return "", "none of the user's addresses is in To, Cc or Bcc"
}

// maxDeliversAsked bounds the addresses of a message that
// ReplyOptions.Delivers resolves (each an alias expansion).
const maxDeliversAsked = 16

// sameAddress compares two addresses as Pigeonhole does: the local part
// and the domain without regard to ASCII case.
func sameAddress(a, b string) bool { return asciiFoldEqual(a, b) }

// stripParams drops a comment or parameter after the value
// ("auto-replied (vacation)", "no; x=y").
func stripParams(v string) string {
	if i := strings.IndexAny(v, " \t;("); i >= 0 {
		return v[:i]
	}
	return v
}

// systemAddress reports the senders that are never answered: mailer
// daemons and list software (as Pigeonhole's _is_system_address).
func systemAddress(addr string) bool {
	local := strings.ToLower(addr)
	if i := strings.LastIndexByte(local, '@'); i >= 0 {
		local = local[:i]
	}
	switch {
	case local == "mailer-daemon", local == "listserv", local == "majordomo":
		return true
	case strings.Contains(local, "-request"), strings.HasPrefix(local, "owner-"):
		return true
	}
	return false
}

// MemoryKey identifies the reply to one sender for this vacation, so
// that it is sent once per period (RFC 5230 §4.1): the sender, case
// folded, and the handle (§4.2).
func (v Vacation) MemoryKey(sender string) string {
	h := sha256.Sum256([]byte(strings.ToLower(sender) + "\x00" + v.Handle))
	return hex.EncodeToString(h[:16])
}

// BuildReply writes the reply, with CRLF line ends, ready for the queue
// (whose envelope sender must be <>). from is what CheckReply returned.
// Every line is within RFC 5322 §2.1.1's 998 octets: header fields are
// folded, text that is not ASCII or has long words is RFC 2047 encoded,
// and a reason with long lines goes quoted-printable.
func (v Vacation) BuildReply(m *Message, o ReplyOptions, from string) []byte {
	var b strings.Builder
	header := func(name, value string) {
		writeField(&b, name, oneLine(value))
	}
	if v.From != "" {
		// RFC 5230 §4.3: :from, when it is an address.
		if a, ok := parseRedirectAddress(v.From); ok {
			from = v.From
			if !strings.ContainsAny(v.From, "<") || len(v.From) > maxMsgID {
				from = a // a display name too long for a line is dropped
			}
		}
	}
	header("From", encodeHeaderAddress(oneLine(from)))
	header("To", "<"+o.Sender+">")
	subject := v.Subject
	if subject == "" {
		// RFC 5230 §5 and Pigeonhole: "Auto: " and the subject.
		subject = "Automated reply"
		if vals := m.values("subject", nil); len(vals) > 0 {
			subject = "Auto: " + vals[0]
		}
	}
	header("Subject", encodeText(truncateUTF8(oneLine(subject), maxSubject)))
	header("Date", o.Now.Format(time.RFC1123Z))
	header("Message-ID", "<"+randomID()+".vacation@"+o.Hostname+">")
	// RFC 5230 §5 and RFC 3834 §3.1.4: the thread of the message.
	msgID, _ := m.first("message-id")
	refs, _ := m.first("references")
	if ids := msgIDs(msgID); len(ids) > 0 {
		header("In-Reply-To", ids[0])
		refs += " " + ids[0]
	}
	if ids := msgIDs(refs); len(ids) > 0 {
		if len(ids) > maxReferences {
			// RFC 5322 §3.6.4 lets a reply trim the list: the first
			// (the thread's root) and the latest.
			ids = append(ids[:1], ids[len(ids)-maxReferences+1:]...)
		}
		header("References", strings.Join(ids, " "))
	}
	// RFC 3834 §5.1; Precedence and X-Auto-Response-Suppress keep
	// older responders quiet, as Pigeonhole's replies do.
	header("Auto-Submitted", "auto-replied (vacation)")
	header("Precedence", "bulk")
	header("X-Auto-Response-Suppress", "All")
	header("MIME-Version", "1.0")
	reason := strings.ReplaceAll(strings.ReplaceAll(v.Reason, "\r\n", "\n"), "\n", "\r\n")
	if !strings.HasSuffix(reason, "\r\n") {
		reason += "\r\n"
	}
	if v.MIME {
		// With :mime the reason is a MIME entity: its own header, an
		// empty line and its body (RFC 5230 §4.4).
		writeEntity(&b, reason)
		return []byte(b.String())
	}
	header("Content-Type", "text/plain; charset=utf-8")
	if hasLongLine(reason) {
		header("Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		writeQP(&b, reason)
	} else {
		header("Content-Transfer-Encoding", "8bit")
		b.WriteString("\r\n")
		b.WriteString(reason)
	}
	return []byte(b.String())
}

const (
	// maxLineLen is RFC 5322 §2.1.1's limit on a line, without CRLF.
	maxLineLen = 998
	// foldAt is where header fields are folded when they can be (RFC
	// 5322 §2.1.1's 78 characters).
	foldAt = 78
	// maxSubject bounds the reply's subject (before encoding).
	maxSubject = 512
	// maxReferences bounds the ids of the reply's References.
	maxReferences = 20
	// maxMsgID drops ids longer than any real one, which could not be
	// written within a line.
	maxMsgID = 250
)

// writeField writes "name: value" folded at spaces so that lines stay
// within foldAt where a space allows, and within maxLineLen always: a
// word that would still be too long is cut (the callers encode or bound
// what could be).
func writeField(b *strings.Builder, name, value string) {
	line := len(name) + 1
	b.WriteString(name + ":")
	for i, w := range strings.Split(strings.TrimLeft(value, " \t"), " ") {
		if len(w) > maxLineLen-1 {
			w = truncateUTF8(w, maxLineLen-1)
		}
		if i > 0 && line+1+len(w) > foldAt && w != "" {
			b.WriteString("\r\n")
			line = 0
		}
		b.WriteString(" " + w)
		line += 1 + len(w)
	}
	b.WriteString("\r\n")
}

// encodeText makes unstructured text (a subject) safe for a header
// field: as it is when it is printable ASCII in words that fold, else
// RFC 2047 encoded words of at most 75 characters each.
func encodeText(s string) string {
	plain := true
	for _, w := range strings.Fields(s) {
		if len(w) > foldAt-10 || strings.Contains(w, "=?") {
			plain = false
		}
	}
	for i := 0; i < len(s) && plain; i++ {
		if s[i] < ' ' || s[i] > '~' {
			plain = false
		}
	}
	if plain {
		return s
	}
	return qWords(s)
}

// qWords encodes s as Q encoded words (RFC 2047 §4.2), each at most 75
// characters, not splitting a UTF-8 sequence.
func qWords(s string) string {
	const prefix, suffix = "=?utf-8?q?", "?="
	const room = 75 - len(prefix) - len(suffix)
	var out []string
	var w strings.Builder
	flush := func() {
		if w.Len() > 0 {
			out = append(out, prefix+w.String()+suffix)
			w.Reset()
		}
	}
	for _, r := range s {
		var enc string
		switch {
		case r == ' ':
			enc = "_"
		case r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!*+-/", r)):
			enc = string(r)
		default:
			var buf [utf8.UTFMax]byte
			n := utf8.EncodeRune(buf[:], r)
			for _, c := range buf[:n] {
				enc += fmt.Sprintf("=%02X", c)
			}
		}
		if w.Len()+len(enc) > room {
			flush()
		}
		w.WriteString(enc)
	}
	flush()
	return strings.Join(out, " ")
}

// msgIDs returns the message ids ("<...>") of a Message-ID, In-Reply-To
// or References field, leaving out any too long to be real.
func msgIDs(v string) []string {
	var ids []string
	for _, w := range strings.Fields(oneLine(v)) {
		if strings.HasPrefix(w, "<") && strings.HasSuffix(w, ">") && len(w) <= maxMsgID {
			ids = append(ids, w)
		}
	}
	return ids
}

func hasLongLine(s string) bool {
	for _, l := range strings.Split(s, "\r\n") {
		if len(l) > maxLineLen {
			return true
		}
	}
	return false
}

func writeQP(b *strings.Builder, s string) {
	w := quotedprintable.NewWriter(b)
	io.WriteString(w, s)
	w.Close()
	if !strings.HasSuffix(b.String(), "\r\n") {
		b.WriteString("\r\n")
	}
}

// writeEntity writes a :mime reason after the reply's own header: only
// its MIME fields (Content-*, RFC 2045 §9) are taken, so that it cannot
// add or override others (a second From, an Auto-Submitted: no), each
// folded; a single part whose body has lines over maxLineLen is
// re-encoded quoted-printable.
func writeEntity(b *strings.Builder, entity string) {
	head, body, ok := strings.Cut(entity, "\r\n\r\n")
	if !ok {
		if strings.HasPrefix(entity, "\r\n") {
			head, body = "", strings.TrimPrefix(entity, "\r\n")
		} else {
			head, body = entity, ""
		}
	}
	var fields []string
	for _, l := range strings.Split(head, "\r\n") {
		switch {
		case l == "":
		case (l[0] == ' ' || l[0] == '\t') && len(fields) > 0:
			fields[len(fields)-1] += " " + strings.TrimSpace(l)
		default:
			fields = append(fields, l)
		}
	}
	var multipart bool
	var kept [][2]string
	for _, f := range fields {
		name, value, ok := strings.Cut(f, ":")
		name = strings.TrimSpace(name)
		if !ok || !strings.HasPrefix(strings.ToLower(name), "content-") || !validFieldName(name) {
			continue
		}
		value = strings.TrimSpace(value)
		if strings.EqualFold(name, "Content-Type") && strings.HasPrefix(strings.ToLower(value), "multipart/") {
			multipart = true
		}
		kept = append(kept, [2]string{name, value})
	}
	qp := !multipart && hasLongLine(body)
	for _, f := range kept {
		if qp && strings.EqualFold(f[0], "Content-Transfer-Encoding") {
			continue
		}
		writeField(b, f[0], f[1])
	}
	if qp {
		writeField(b, "Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		writeQP(b, body)
		return
	}
	b.WriteString("\r\n")
	b.WriteString(body)
}

// oneLine keeps a value from breaking the header.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, s)
}

// encodeHeaderAddress writes "Name <addr>" for a header field: a name
// that is not ASCII as encoded words of the characters RFC 2047 §5(3)
// allows in a phrase (Go's mime.QEncoding leaves "," and '"', which would
// split the address), an ASCII one quoted when it needs to be.
func encodeHeaderAddress(s string) string {
	lt := strings.IndexByte(s, '<')
	if lt <= 0 {
		return s
	}
	name := strings.TrimSpace(s[:lt])
	if len(name) >= 2 && name[0] == '"' && name[len(name)-1] == '"' {
		name = strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(name[1 : len(name)-1])
	}
	if name == "" {
		return s[lt:]
	}
	ascii := true
	for i := 0; i < len(name); i++ {
		if name[i] < ' ' || name[i] > '~' {
			ascii = false
		}
	}
	switch {
	case !ascii:
		name = qWords(name)
	case strings.ContainsAny(name, `()<>[]:;@\,."`):
		name = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `"`
	}
	return name + " " + s[lt:]
}

func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}
