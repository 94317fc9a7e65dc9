package sieve

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime"
	"strings"
	"time"
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
	own := append([]string{o.Recipient}, o.Own...)
	for _, a := range append(own, v.Addresses...) {
		if strings.EqualFold(a, o.Sender) {
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
	for _, h := range []string{"to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"} {
		for _, i := range m.byName[h] {
			for _, a := range parseAddressList(m.fields[i].raw) {
				if a.invalid || a.empty {
					continue
				}
				addr := unquoteLocal(a.local) + "@" + a.domain
				for _, mine := range own {
					if strings.EqualFold(addr, mine) {
						return mine, ""
					}
				}
				for _, mine := range v.Addresses {
					if strings.EqualFold(addr, mine) {
						return mine, ""
					}
				}
			}
		}
	}
	return "", "none of the user's addresses is in To, Cc or Bcc"
}

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
func (v Vacation) BuildReply(m *Message, o ReplyOptions, from string) []byte {
	var b strings.Builder
	header := func(name, value string) {
		b.WriteString(name + ": " + oneLine(value) + "\r\n")
	}
	if v.From != "" {
		// RFC 5230 §4.3: :from, when it is an address.
		if a, ok := parseRedirectAddress(v.From); ok {
			from = v.From
			if !strings.ContainsAny(v.From, "<") {
				from = a
			}
		}
	}
	header("From", encodeHeaderAddress(from))
	header("To", "<"+o.Sender+">")
	subject := v.Subject
	if subject == "" {
		// RFC 5230 §4.4 and Pigeonhole: "Auto: " and the subject.
		subject = "Automated reply"
		if vals := m.values("subject", nil); len(vals) > 0 {
			subject = "Auto: " + vals[0]
		}
	}
	header("Subject", mime.QEncoding.Encode("utf-8", oneLine(subject)))
	header("Date", o.Now.Format(time.RFC1123Z))
	header("Message-ID", "<"+randomID()+".vacation@"+o.Hostname+">")
	// RFC 5230 §4.7 and RFC 3834 §3.1.4: the thread of the message.
	msgID, hasID := m.first("message-id")
	refs, hasRefs := m.first("references")
	if hasID {
		header("In-Reply-To", msgID)
		if hasRefs {
			header("References", refs+" "+msgID)
		} else {
			header("References", msgID)
		}
	} else if hasRefs {
		header("References", refs)
	}
	// RFC 3834 §5.1; Precedence and X-Auto-Response-Suppress keep
	// older responders quiet, as Pigeonhole's replies do.
	header("Auto-Submitted", "auto-replied (vacation)")
	header("Precedence", "bulk")
	header("X-Auto-Response-Suppress", "All")
	header("MIME-Version", "1.0")
	reason := strings.ReplaceAll(strings.ReplaceAll(v.Reason, "\r\n", "\n"), "\n", "\r\n")
	if !v.MIME {
		header("Content-Type", "text/plain; charset=utf-8")
		header("Content-Transfer-Encoding", "8bit")
		b.WriteString("\r\n")
	}
	// With :mime the reason is a MIME entity: its own header, an empty
	// line and its body (RFC 5230 §4.6).
	b.WriteString(reason)
	if !strings.HasSuffix(reason, "\r\n") {
		b.WriteString("\r\n")
	}
	return []byte(b.String())
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

// encodeHeaderAddress encodes a display name that is not ASCII.
func encodeHeaderAddress(s string) string {
	lt := strings.IndexByte(s, '<')
	if lt <= 0 {
		return s
	}
	name := strings.TrimSpace(s[:lt])
	return mime.QEncoding.Encode("utf-8", name) + " " + s[lt:]
}

func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}
