package imap

import (
	"errors"
	"io"
	"sync"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"mailroom/imap/internal/wire"
	"mailroom/mailbox"
)

// Fetch answers FETCH and UID FETCH. FLAGS, UID, INTERNALDATE and
// RFC822.SIZE come from the view; the message is opened only for the
// other items, and parsed only as far as they need. A body section
// without .PEEK sets \Seen (not in EXAMINE) and reports the new flags in
// the same response (RFC 9051 §6.4.5).
func (s *session) Fetch(w *fetchWriter, numSet goimap.NumSet, options *goimap.FetchOptions) error {
	idx, err := s.resolve(numSet)
	if err != nil {
		return err
	}
	seen, err := s.markSeen(idx, options)
	if err != nil {
		return err
	}
	// ENVELOPE and BODYSTRUCTURE come from the store's header cache
	// where it has them (asked for cacheChunk messages at a time), and
	// fill it where not (bscache.go).
	var hc mailbox.HeaderCache
	if options.Envelope || options.BodyStructure != nil {
		hc = s.headerCache()
	}
	req := &fetchReq{options: options, hc: hc}
	var (
		entries map[uint32][]byte
		dates   map[uint32]time.Time
	)
	expunged := false
	for k, i := range idx {
		if hc != nil && k%cacheChunk == 0 {
			entries = s.cachedFields(hc, idx[k:min(k+cacheChunk, len(idx))])
		}
		if options.InternalDate && k%cacheChunk == 0 {
			if dates, err = s.internalDates(idx[k:min(k+cacheChunk, len(idx))]); err != nil {
				return err
			}
		}
		m := s.view.Messages[i]
		var dated bool
		if m.InternalDate, dated = dateOf(&m, dates); !dated {
			// Expunged by another session before its date was read:
			// no INTERNALDATE of the year 1 (imaptest's stress saw
			// one), but no response, as for a file gone.
			expunged = true
			continue
		}
		flagsChanged := false
		if nm, ok := seen[m.UID]; ok {
			m.Flags, flagsChanged = nm.Flags, true
		}
		fm := fetchMsg{seq: uint32(i + 1), m: m, flagsChanged: flagsChanged}
		if e, ok := entries[m.UID]; ok {
			block, env, cs := splitEntry(e)
			if options.Envelope {
				if env == nil {
					// An entry from before ENVELOPEs were cached: the
					// next FETCH finds it.
					fm.env = envelopeOf(fieldsOf(block))
					if env = encodeEnvelope(fm.env); env != nil {
						hc.CacheFields(s.name, m.UID, entryWith(block, env, cs))
					}
				}
				switch {
				case !w.c.enc.UTF8:
					fm.envRaw = env
				case fm.env == nil:
					fm.env = envelopeOf(fieldsOf(block))
				}
			}
			if fm.bsCached = cs != nil; !w.c.enc.UTF8 {
				fm.bs = cs
			}
		}
		err := s.fetchOne(w, req, fm)
		if errors.Is(err, errGone) {
			expunged = true
			continue
		}
		if err != nil {
			return err
		}
	}
	if expunged {
		return errExpunged
	}
	return nil
}

var errGone = errors.New("message gone")

// markSeen sets \Seen on the messages a non-peek FETCH reads and returns
// their new state.
func (s *session) markSeen(idx []int, options *goimap.FetchOptions) (map[uint32]mailbox.Message, error) {
	if s.readOnly {
		return nil, nil
	}
	peek := true
	for _, b := range options.BodySection {
		peek = peek && b.Peek
	}
	for _, b := range options.BinarySection {
		peek = peek && b.Peek
	}
	if peek {
		return nil, nil
	}
	var uids []uint32
	for _, i := range idx {
		if m := s.view.Messages[i]; !hasFlag(m.Flags, mailbox.FlagSeen) {
			uids = append(uids, m.UID)
		}
	}
	if len(uids) == 0 {
		return nil, nil
	}
	snap, err := s.folders.SetFlags(s.ctx, s.name, uids, mailbox.FlagsAdd, []string{mailbox.FlagSeen})
	if err != nil {
		return nil, s.fail("set \\Seen", err)
	}
	out := make(map[uint32]mailbox.Message, len(uids))
	for _, uid := range uids {
		if i, ok := indexOf(snap.Messages, uid); ok {
			out[uid] = snap.Messages[i]
			s.noteReported(uid, snap.Messages[i].ModSeq)
		}
	}
	return out, nil
}

func (s *session) noteReported(uid uint32, modSeq uint64) {
	if s.reported == nil {
		s.reported = map[uint32]uint64{}
	}
	s.reported[uid] = modSeq
}

// fetchItems is what one message's FETCH response carries beyond the
// view's data, computed before the response starts so that a message that
// cannot be read or parsed never leaves a half-written response.
type fetchItems struct {
	env      *wire.Envelope
	bs       goimap.BodyStructure
	sections [][]byte // parallel to options.BodySection; nil entries use spans
	spans    []span
	binary   [][]byte
}

// fetchReq is what a FETCH asks of every message: its items, and the
// store's header cache (nil: none) when ENVELOPE is among them.
type fetchReq struct {
	options *goimap.FetchOptions
	hc      mailbox.HeaderCache
}

// fetchMsg is one message of a FETCH: its sequence number, its state,
// whether that state has flags the client has not been told yet (a
// non-peek fetch set \Seen), and its ENVELOPE and BODYSTRUCTURE if the
// header cache had them (envRaw: the ENVELOPE encoded, for a session
// without UTF8=ACCEPT; env: computed from the cached fields).
type fetchMsg struct {
	seq          uint32
	m            mailbox.Message
	flagsChanged bool
	env          *wire.Envelope
	envRaw       []byte
	bs           *cachedStructure
	bsCached     bool // the entry has the structure (bs may be nil: UTF8=ACCEPT)
}

// fetchOne writes one message's response. Without msg.env the ENVELOPE
// is computed from the message, and the header cache, if any, given the
// message's entry.
func (s *session) fetchOne(w *fetchWriter, req *fetchReq, msg fetchMsg) error {
	var (
		items fetchItems
		c     *content
	)
	options, hc, m, env, envRaw := req.options, req.hc, msg.m, msg.env, msg.envRaw
	items.env = env
	have := known{env: env != nil || envRaw != nil, bs: msg.bs != nil}
	if needsContent(options, have) {
		r, size, err := s.folders.Open(s.ctx, s.name, m.UID)
		if errors.Is(err, mailbox.ErrNoMessage) {
			return errGone
		}
		if err != nil {
			return s.fail("open message", err)
		}
		defer r.Close()
		if wholeOnly(options, have) {
			// BODY[] (mbsync's and most clients' download) needs no parsing.
			c = &content{r: r, size: size}
			items.sections = make([][]byte, len(options.BodySection))
			items.spans = make([]span, len(options.BodySection))
			for i, sec := range options.BodySection {
				items.spans[i] = partial(span{0, size}, sec.Partial)
			}
		} else {
			c, err = newContent(r, size)
			if err == nil {
				c.onPanic = s.recordPanic
				defer c.release() // after the spans are written
				err = c.items(options, have, &items)
			}
		}
		if err != nil {
			s.log.Error("read message", "folder", s.name, "uid", m.UID, "err", err)
			return errTemporary
		}
		var cs *cachedStructure
		if items.bs != nil && hc != nil && !msg.bsCached {
			cs = encodeStructure(items.bs)
		}
		if options.Envelope && !have.env {
			items.env = envelopeOf(c.fields)
		}
		if hc != nil && (!have.env && options.Envelope || cs != nil) {
			// The ENVELOPE is encoded once, into the entry, which
			// this response (without UTF8=ACCEPT) writes it from.
			e := items.env
			if e == nil && envRaw == nil {
				e = envelopeOf(c.fields)
			}
			entry, raw := buildEntry(c.fields, envRaw, e, cs)
			hc.CacheFields(s.name, m.UID, entry)
			if !w.c.enc.UTF8 && raw != nil {
				envRaw = raw
			}
		}
	}
	rw := w.CreateMessage(msg.seq)
	// The response writer holds the connection's write lock until it is
	// closed: a literal that fails half-way (the client went away) must
	// still close it, or the session can never write, or end, again.
	closed := false
	defer func() {
		if !closed {
			rw.Close()
		}
	}()
	if options.UID {
		rw.WriteUID(goimap.UID(m.UID))
	}
	if options.Flags || msg.flagsChanged {
		rw.WriteFlags(s.flagsOf(m))
	}
	if options.InternalDate {
		rw.WriteInternalDate(m.InternalDate)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(m.Size)
	}
	switch {
	case !options.Envelope:
	case envRaw != nil:
		rw.WriteCachedEnvelope(envRaw)
	default:
		rw.WriteEnvelope(items.env)
	}
	switch {
	case options.BodyStructure == nil:
	case msg.bs != nil:
		rw.WriteCachedStructure(msg.bs.ext, msg.bs.basic)
	default:
		rw.WriteBodyStructure(items.bs)
	}
	for i, sec := range options.BodySection {
		if b := items.sections[i]; b != nil {
			if err := writeBytes(rw.WriteBodySection(sec, int64(len(b))), b); err != nil {
				return err
			}
			continue
		}
		sp := items.spans[i]
		if err := s.writeSpan(rw.WriteBodySection(sec, sp.n), c, sp); err != nil {
			return err
		}
	}
	for i, sec := range options.BinarySection {
		b := items.binary[i]
		if err := writeBytes(rw.WriteBinarySection(sec, int64(len(b))), b); err != nil {
			return err
		}
	}
	for _, sec := range options.BinarySectionSize {
		n := uint32(0)
		if b, err := c.binary(&goimap.FetchItemBinarySection{Part: sec.Part}); err == nil {
			n = uint32(len(b))
		}
		rw.WriteBinarySectionSize(sec, n)
	}
	closed = true
	return rw.Close()
}

// known is what a FETCH has of a message from the header cache already.
type known struct{ env, bs bool }

// wholeOnly says whether every item that needs the message is the whole
// message as stored (BODY[], BODY.PEEK[], with or without <partial>).
func wholeOnly(o *goimap.FetchOptions, k known) bool {
	if (o.Envelope && !k.env) || (o.BodyStructure != nil && !k.bs) || len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0 {
		return false
	}
	for _, sec := range o.BodySection {
		if len(sec.Part) > 0 || len(sec.HeaderFields) > 0 || len(sec.HeaderFieldsNot) > 0 || sec.Specifier != goimap.PartSpecifierNone {
			return false
		}
	}
	return true
}

// needsContent says whether the message must be read, given what is
// known of it already.
func needsContent(o *goimap.FetchOptions, k known) bool {
	return (o.Envelope && !k.env) || (o.BodyStructure != nil && !k.bs) || len(o.BodySection) > 0 || len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0
}

// items computes everything that needs the message's content and is not
// known already.
func (c *content) items(o *goimap.FetchOptions, k known, it *fetchItems) error {
	if o.BodyStructure != nil && !k.bs {
		bs, err := c.bodyStructure()
		if err != nil {
			return err
		}
		it.bs = bs
	}
	it.sections = make([][]byte, len(o.BodySection))
	it.spans = make([]span, len(o.BodySection))
	for i, sec := range o.BodySection {
		if sp, ok := c.rawSection(sec); ok {
			it.spans[i] = sp
			continue
		}
		b, err := c.section(sec)
		if err != nil || b == nil {
			b = []byte{} // a part that is not there, or does not parse: empty
		}
		it.sections[i] = b
	}
	it.binary = make([][]byte, len(o.BinarySection))
	for i, sec := range o.BinarySection {
		b, err := c.binary(sec)
		if err != nil || b == nil {
			b = []byte{}
		}
		it.binary[i] = b
	}
	return nil
}

func writeBytes(wc io.WriteCloser, b []byte) error {
	_, err := wc.Write(b)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

// copyBufs recycles writeSpan's copy buffers (one per message otherwise).
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// writeSpan copies a byte range of the stored message into a literal whose
// size is already on the wire. Should the file end early (changed under
// us), the literal is padded with spaces so that the session stays in
// step; the error is logged.
func (s *session) writeSpan(wc io.WriteCloser, c *content, sp span) error {
	var n int64
	var rerr error
	if err := c.seek(sp.off); err != nil {
		rerr = err
	} else {
		buf := copyBufs.Get().(*[]byte)
		n, rerr = io.CopyBuffer(wc, io.LimitReader(c.r, sp.n), *buf)
		copyBufs.Put(buf)
	}
	if n < sp.n {
		s.log.Error("message shorter than its size; padded", "folder", s.name, "err", rerr)
		pad := make([]byte, 4096)
		for i := range pad {
			pad[i] = ' '
		}
		for n < sp.n {
			k := min(int64(len(pad)), sp.n-n)
			if _, err := wc.Write(pad[:k]); err != nil {
				return err
			}
			n += k
		}
	}
	return wc.Close()
}
