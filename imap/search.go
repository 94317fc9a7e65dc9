package imap

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
	"golang.org/x/text/cases"

	"mailroom/mailbox"
)

// Search answers SEARCH and UID SEARCH with every RFC 3501/9051 key. Text
// keys match case-insensitively after Unicode case folding, in header
// values with MIME encoded-words decoded, and in body parts decoded from
// their transfer encoding and charset. The library turns SearchData into
// SEARCH or ESEARCH (MIN/MAX/COUNT/ALL); SAVE is kept here for "$".
// searchResult is SEARCH's answer: hits for a SEARCH response (sequence
// numbers or UIDs, ascending), the rest for ESEARCH.
type searchResult struct {
	goimap.SearchData
	hits []uint32
}

func (s *session) Search(uidKind bool, criteria *goimap.SearchCriteria, options *goimap.SearchOptions) (*searchResult, error) {
	msgs := s.view.Messages
	var (
		data searchResult
		seqs goimap.SeqSet
		uids goimap.UIDSet
		hits []uint32 // UIDs, for SAVE
	)
	// Criteria on the cached header fields alone are answered from the
	// store's header cache, which is filled for messages without an entry.
	var hc mailbox.HeaderCache
	if needsHeader(criteria) && cacheable(criteria) {
		hc = s.headerCache()
	}
	var (
		entries map[uint32][]byte
		chunk   []int
		dates   map[uint32]time.Time
	)
	withDates := needsDates(criteria)
	var sc scratch
	for i := range msgs {
		if withDates && i%cacheChunk == 0 {
			chunk = chunk[:0]
			for k := i; k < min(i+cacheChunk, len(msgs)); k++ {
				chunk = append(chunk, k)
			}
			var err error
			if dates, err = s.internalDates(chunk); err != nil {
				return nil, err
			}
		}
		date, _ := dateOf(&msgs[i], dates) // zero for a message gone
		l := lazy{sc: &sc, onPanic: s.recordPanic, date: date}
		if hc != nil {
			if i%cacheChunk == 0 {
				chunk = chunk[:0]
				for k := i; k < min(i+cacheChunk, len(msgs)); k++ {
					chunk = append(chunk, k)
				}
				entries = s.cachedFields(hc, chunk)
			}
			l.hc = hc
			if e, ok := entries[msgs[i].UID]; ok {
				l.c = &content{fields: fieldsOf(e)}
				l.loaded = true
			}
		}
		ok, err := s.match(i, criteria, &l)
		l.close()
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		uid := msgs[i].UID
		hits = append(hits, uid)
		num := uid
		if !uidKind {
			num = uint32(i + 1)
			seqs.AddNum(num)
		} else {
			uids.AddNum(goimap.UID(uid))
		}
		data.hits = append(data.hits, num)
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
	}
	if !uidKind {
		data.All = seqs
	} else {
		data.All = uids
	}
	if options.ReturnSave {
		// RFC 5182 §2.4: with only MIN and/or MAX, only those are saved.
		if !options.ReturnAll && !options.ReturnCount && len(hits) > 0 {
			var saved []uint32
			if options.ReturnMin {
				saved = append(saved, hits[0])
			}
			if options.ReturnMax && len(hits) > 1 {
				saved = append(saved, hits[len(hits)-1])
			}
			hits = saved
		}
		s.searchRes = hits
	}
	return &data, nil
}

// needsHeader says whether criteria look at the message's header.
func needsHeader(c *goimap.SearchCriteria) bool {
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() || len(c.Header) > 0 || len(c.Body) > 0 || len(c.Text) > 0 {
		return true
	}
	for i := range c.Not {
		if needsHeader(&c.Not[i]) {
			return true
		}
	}
	for _, or := range c.Or {
		if needsHeader(&or[0]) || needsHeader(&or[1]) {
			return true
		}
	}
	return false
}

// cacheable says whether criteria need no more of a message than the
// fields a mailbox.HeaderCache keeps.
func cacheable(c *goimap.SearchCriteria) bool {
	if len(c.Body) > 0 || len(c.Text) > 0 {
		return false
	}
	for _, h := range c.Header {
		if !isCachedKey(h.Key) {
			return false
		}
	}
	for i := range c.Not {
		if !cacheable(&c.Not[i]) {
			return false
		}
	}
	for _, or := range c.Or {
		if !cacheable(&or[0]) || !cacheable(&or[1]) {
			return false
		}
	}
	return true
}

// lazy holds what one message's match has read so far. With hc set, c
// may hold only the cached fields (loaded from the cache), and a message
// read from its file gets its cache entry.
type lazy struct {
	r      io.Closer
	c      *content
	loaded bool
	gone   bool
	hc     mailbox.HeaderCache
	sc     *scratch
	date   time.Time // the internal date
	// onPanic records a panic of go-message's parsing (bodyHas).
	onPanic func(where string, v any)
}

// scratch is what one SEARCH reuses from message to message: the folded
// search terms and a buffer for lower-casing.
type scratch struct {
	folds map[string]string
	low   []byte
	wantS string // the last term contains looked for, as bytes in wantB
	wantB []byte
}

func (sc *scratch) fold(s string) string {
	if f, ok := sc.folds[s]; ok {
		return f
	}
	if sc.folds == nil {
		sc.folds = map[string]string{}
	}
	f := fold(s)
	sc.folds[s] = f
	return f
}

// contains reports whether v, folded, contains want (folded).
func (sc *scratch) contains(v, want string) bool {
	if !isASCIIString(v) {
		return strings.Contains(fold(v), want)
	}
	if !isASCIIString(want) {
		return false // an ASCII text folds to ASCII
	}
	b := append(sc.low[:0], v...)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	sc.low = b
	if sc.wantS != want || sc.wantB == nil {
		sc.wantS, sc.wantB = want, []byte(want)
	}
	return bytes.Contains(b, sc.wantB)
}

func isASCIIString(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

var folder = cases.Fold()

func fold(s string) string { return folder.String(s) }

// load opens the message and reads its header; the body is read only if
// a BODY or TEXT key needs it. close releases the file.
func (s *session) load(m mailbox.Message, l *lazy) error {
	if l.loaded {
		return nil
	}
	l.loaded = true
	r, size, err := s.folders.Open(s.ctx, s.name, m.UID)
	if errors.Is(err, mailbox.ErrNoMessage) {
		l.gone = true
		return nil
	}
	if err != nil {
		return s.fail("open message", err)
	}
	l.r = r
	l.c, err = newContent(r, size)
	if err != nil {
		return s.fail("read message", err)
	}
	l.c.onPanic = s.recordPanic
	if l.hc != nil {
		l.hc.CacheFields(s.name, m.UID, newEntry(l.c.fields, nil))
	}
	return nil
}

func (l *lazy) close() {
	if l.r != nil {
		l.c.release()
		l.r.Close()
	}
}

var wordDecoder = mime.WordDecoder{CharsetReader: charset.Reader}

func decodeHeader(v string) string {
	if d, err := wordDecoder.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

var unfolder = strings.NewReplacer("\r\n", "", "\n", "", "\r", "")

// fieldValue is a field's value, unfolded and decoded.
func fieldValue(f field) string {
	v := string(f.raw[len(f.key):])
	v = strings.TrimLeft(v, " \t")
	v = strings.TrimPrefix(v, ":")
	v = unfolder.Replace(v)
	return decodeHeader(strings.TrimSpace(v))
}

// match evaluates criteria for the message at index i: the cheap keys
// from the view first, the message's content only if they all pass.
func (s *session) match(i int, c *goimap.SearchCriteria, l *lazy) (bool, error) {
	m := s.view.Messages[i]
	for _, set := range c.SeqNum {
		if !s.inSeqSet(set, uint32(i+1)) {
			return false, nil
		}
	}
	for _, set := range c.UID {
		if !s.inUIDSet(set, m.UID) {
			return false, nil
		}
	}
	for _, f := range c.Flag {
		if !s.hasFlag(m, f) {
			return false, nil
		}
	}
	for _, f := range c.NotFlag {
		if s.hasFlag(m, f) {
			return false, nil
		}
	}
	if c.Larger > 0 && m.Size <= c.Larger {
		return false, nil
	}
	if c.Smaller > 0 && m.Size >= c.Smaller {
		return false, nil
	}
	if !inDates(l.date, c.Since, c.Before) {
		return false, nil
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() || len(c.Header) > 0 || len(c.Body) > 0 || len(c.Text) > 0 {
		if err := s.load(m, l); err != nil {
			return false, err
		}
		if l.gone {
			return false, nil
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
			h := mail.Header{Header: gomessage.Header{Header: l.c.header()}}
			d, err := h.Date()
			if err != nil || d.IsZero() || !inDates(d, c.SentSince, c.SentBefore) {
				return false, nil
			}
		}
		for _, h := range c.Header {
			if !l.headerHas(h.Key, h.Value) {
				return false, nil
			}
		}
		for _, t := range c.Body {
			if !l.bodyHas(l.sc.fold(t)) {
				return false, nil
			}
		}
		for _, t := range c.Text {
			if !l.headerHas("", t) && !l.bodyHas(l.sc.fold(t)) {
				return false, nil
			}
		}
	}
	for k := range c.Not {
		ok, err := s.match(i, &c.Not[k], l)
		if err != nil || ok {
			return false, err
		}
	}
	for _, or := range c.Or {
		a, err := s.match(i, &or[0], l)
		if err != nil {
			return false, err
		}
		if !a {
			b, err := s.match(i, &or[1], l)
			if err != nil || !b {
				return false, err
			}
		}
	}
	return true, nil
}

// hasFlag says whether m has flag f for this session: \Recent is the
// session's (SEARCH RECENT, NEW, OLD), the rest the message's.
func (s *session) hasFlag(m mailbox.Message, f goimap.Flag) bool {
	if strings.EqualFold(string(f), flagRecent) {
		return s.recent.has(m.UID)
	}
	return hasFlag(m.Flags, string(f))
}

// headerHas reports whether a field named key (any field, for key "")
// contains value; an empty value matches any field of that name.
func (l *lazy) headerHas(key, value string) bool {
	want := l.sc.fold(value)
	for _, f := range l.c.fields {
		if key != "" && !strings.EqualFold(f.key, key) {
			continue
		}
		if want == "" {
			return true
		}
		v := fieldValue(f)
		if key == "" {
			v = f.key + ": " + v
		}
		if l.sc.contains(v, want) {
			return true
		}
		if key != "" && isAddressKey(f.key) && l.addressHas(f, want) {
			return true
		}
	}
	return false
}

// isAddressKey says whether a field holds an address list.
func isAddressKey(k string) bool {
	switch strings.ToLower(k) {
	case "from", "sender", "reply-to", "to", "cc", "bcc":
		return true
	}
	return false
}

// addressHas matches want against each address of the field as
// "Name <mailbox@host>", comments and routes left out, as Dovecot
// does: "<user (comment)@ domain.org>" is found by SEARCH FROM
// user@domain.org.
func (l *lazy) addressHas(f field, want string) bool {
	for _, a := range parseAddressList(rawValue(f)) {
		if a.Host == "" { // a group's start or end
			continue
		}
		v := a.Mailbox + "@" + a.Host
		if a.Name != "" {
			v = decodeHeader(a.Name) + " <" + v + ">"
		}
		if l.sc.contains(v, want) {
			return true
		}
	}
	return false
}

// inDates compares the date of t, in its own time zone, with the dates
// of since and before (RFC 9051 §6.4.4: time and time zone disregarded).
func inDates(t, since, before time.Time) bool {
	if since.IsZero() && before.IsZero() {
		return true
	}
	y, mo, d := t.Date()
	day := time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
	if !since.IsZero() {
		y, mo, d := since.Date()
		if day.Before(time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)) {
			return false
		}
	}
	if !before.IsZero() {
		y, mo, d := before.Date()
		if !day.Before(time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)) {
			return false
		}
	}
	return true
}

func (s *session) inSeqSet(set goimap.SeqSet, seq uint32) bool {
	n := uint32(len(s.view.Messages))
	for _, r := range set {
		if start, stop := normRange(r.Start, r.Stop, n); seq >= start && seq <= stop {
			return true
		}
	}
	return false
}

func (s *session) inUIDSet(set goimap.UIDSet, uid uint32) bool {
	if goimap.IsSearchRes(set) {
		for _, u := range s.searchRes {
			if u == uid {
				return true
			}
		}
		return false
	}
	var maxUID uint32
	if n := len(s.view.Messages); n > 0 {
		maxUID = s.view.Messages[n-1].UID
	}
	for _, r := range set {
		if start, stop := normRange(uint32(r.Start), uint32(r.Stop), maxUID); uid >= start && uid <= stop {
			return true
		}
	}
	return false
}
