package imap

import (
	"bytes"
	"net/textproto"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

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
// the cached ones are ignored). It builds the header go-message's
// ReadHeader would give for them, without reading them again.
func envelopeOf(fields []field) (env *goimap.Envelope) {
	defer func() {
		if recover() != nil {
			env = &goimap.Envelope{}
		}
	}()
	h := headerOf(fields, isCachedKey)
	// net/mail.ParseDate, which the library calls, tries dozens of
	// layouts and builds an error for each that fails: a quarter of
	// the cost of a cached ENVELOPE. Most dates parse with the first
	// layout of RFC 5322 here, to the same time.
	if t, err := time.Parse(commonDate, h.Get("Date")); err == nil {
		h.Del("Date")
		env = imapserver.ExtractEnvelope(h)
		env.Date = t
		return env
	}
	return imapserver.ExtractEnvelope(h)
}

// commonDate is the usual form of a Date field (RFC 5322 §3.3, a one or
// two digit day).
const commonDate = "Mon, 2 Jan 2006 15:04:05 -0700"

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
