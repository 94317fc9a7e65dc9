package imap

import (
	"bytes"
	"net/textproto"
	"strings"

	"mailroom/imap/internal/wire"
	"mailroom/mailbox"
)

// Header-only answers (FETCH ENVELOPE, SEARCH on the envelope's fields)
// come from the store's mailbox.HeaderCache when it has one: the cached
// block holds mailbox.CachedHeaderFields() as the message has them, so
// parseFields over it gives the same fields, in the same order, as over
// the whole header, and everything computed from them is the same.

// cacheChunk is how many UIDs one CachedFields call asks for.
const cacheChunk = 1000

// cachedKey says whether a (canonical) field name is one the cache keeps.
var cachedKey = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range mailbox.CachedHeaderFields() {
		m[textproto.CanonicalMIMEHeaderKey(k)] = true
	}
	return m
}()

func isCachedKey(k string) bool { return cachedKey[textproto.CanonicalMIMEHeaderKey(k)] }

// headerCache is the session's store's HeaderCache, or nil.
func (s *session) headerCache() mailbox.HeaderCache {
	hc, _ := s.folders.(mailbox.HeaderCache)
	return hc
}

// cachedBlock is the HeaderCache entry for a message with these fields.
func cachedBlock(fields []field) []byte {
	n := 0
	for _, f := range fields {
		if isCachedKey(f.key) {
			n += len(f.raw)
		}
	}
	b := make([]byte, 0, n)
	for _, f := range fields {
		if isCachedKey(f.key) {
			b = append(b, f.raw...)
		}
	}
	return b
}

// envelopeOf is the ENVELOPE of a message with these fields (others than
// the cached ones are ignored): the values as the message has them,
// unfolded (Dovecot sends them so too), the first of each field, and the
// address lists parsed (address.go).
func envelopeOf(fields []field) *wire.Envelope {
	env := &wire.Envelope{}
	seen := 0 // bit i: envelopeKeys[i] done
	for _, f := range fields {
		i := envelopeKey(f.key)
		if i < 0 || seen&(1<<i) != 0 {
			continue
		}
		seen |= 1 << i
		v := rawValue(f)
		switch i {
		case 0:
			env.Date = v
		case 1:
			env.Subject = v
		case 2:
			env.From = parseAddressList(v)
		case 3:
			env.Sender = parseAddressList(v)
		case 4:
			env.ReplyTo = parseAddressList(v)
		case 5:
			env.To = parseAddressList(v)
		case 6:
			env.Cc = parseAddressList(v)
		case 7:
			env.Bcc = parseAddressList(v)
		case 8:
			env.InReplyTo = v
		case 9:
			env.MessageID = v
		}
	}
	return env
}

// envelopeKeys are the fields of an ENVELOPE, in its order.
var envelopeKeys = [...]string{"Date", "Subject", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "In-Reply-To", "Message-ID"}

func envelopeKey(k string) int {
	for i, e := range envelopeKeys {
		if strings.EqualFold(k, e) {
			return i
		}
	}
	return -1
}

// rawValue is a field's value as the message has it, unfolded and
// trimmed, encoded-words and all.
func rawValue(f field) string {
	v := f.raw[len(f.key):]
	v = bytes.TrimLeft(v, " \t")
	v = bytes.TrimPrefix(v, []byte(":"))
	v = bytes.TrimSpace(v)
	if bytes.IndexByte(v, '\n') < 0 {
		return string(v)
	}
	var sb strings.Builder
	for _, c := range v {
		if c != '\r' && c != '\n' {
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// cachedFields reads the HeaderCache entries of the messages at these
// indexes of the view; nil without a cache, or if the store fails (the
// messages are read instead).
func (s *session) cachedFields(hc mailbox.HeaderCache, idx []int) map[uint32][]byte {
	if hc == nil || len(idx) == 0 {
		return nil
	}
	uids := make([]uint32, len(idx))
	for k, i := range idx {
		uids[k] = s.view.Messages[i].UID
	}
	m, err := hc.CachedFields(s.ctx, s.name, uids)
	if err != nil {
		s.log.Warn("header cache", "folder", s.name, "err", err)
		return nil
	}
	return m
}

// fieldsOf parses a HeaderCache entry.
func fieldsOf(entry []byte) []field {
	if len(entry) == 0 {
		return nil
	}
	if !bytes.HasSuffix(entry, []byte("\n")) {
		entry = append(entry[:len(entry):len(entry)], '\r', '\n')
	}
	return parseFields(entry)
}
