package imap

import (
	"io"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"mailroom/imap/internal/wire"
)

// Response writers the session code writes through: FETCH responses,
// the updates of the selected folder, LIST/LSUB.

// fetchWriter writes the FETCH responses of one command.
type fetchWriter struct {
	c     *conn
	names *wire.FetchNames
	r     fetchResponse // the one being written: one at a time, reused
}

// fetchResponse is one "* n FETCH (...)" being written.
type fetchResponse struct {
	e     *wire.Encoder
	names *wire.FetchNames
	items int
}

// CreateMessage starts the response for message seq; Close ends it.
func (w *fetchWriter) CreateMessage(seq uint32) *fetchResponse {
	w.c.enc.Atom("* ").Number(seq).Atom(" FETCH (")
	w.r = fetchResponse{e: w.c.enc, names: w.names}
	return &w.r
}

func (r *fetchResponse) item(name string) *wire.Encoder {
	if r.items > 0 {
		r.e.SP()
	}
	r.items++
	return r.e.Atom(name)
}

func (r *fetchResponse) WriteUID(uid goimap.UID) { r.item("UID ").Number(uint32(uid)) }

func (r *fetchResponse) WriteFlags(flags []goimap.Flag) { r.item("FLAGS ").Flags(flags) }

func (r *fetchResponse) WriteInternalDate(t time.Time) { r.item("INTERNALDATE ").DateTime(t) }

func (r *fetchResponse) WriteRFC822Size(n int64) { r.item("RFC822.SIZE ").Number64(n) }

func (r *fetchResponse) WriteEnvelope(env *wire.Envelope) { r.item("ENVELOPE ").Envelope(env) }

// WriteCachedEnvelope writes an ENVELOPE from its encoded form (bscache.go).
func (r *fetchResponse) WriteCachedEnvelope(env []byte) { r.item("ENVELOPE ").Raw(env) }

// WriteBodyStructure writes BODY, BODYSTRUCTURE or both, as asked.
func (r *fetchResponse) WriteBodyStructure(bs goimap.BodyStructure) {
	if r.names.Body {
		r.item("BODY ").BodyStructure(bs, false)
	}
	if r.names.BodyStructure {
		r.item("BODYSTRUCTURE ").BodyStructure(bs, true)
	}
}

// WriteCachedStructure writes BODY, BODYSTRUCTURE or both, as asked, from
// their encoded forms (bscache.go).
func (r *fetchResponse) WriteCachedStructure(ext, basic []byte) {
	if r.names.Body {
		r.item("BODY ").Raw(basic)
	}
	if r.names.BodyStructure {
		r.item("BODYSTRUCTURE ").Raw(ext)
	}
}

// WriteBodySection starts a body section of size bytes; the caller
// writes them and closes the writer.
func (r *fetchResponse) WriteBodySection(sec *goimap.FetchItemBodySection, size int64) io.WriteCloser {
	if r.items > 0 {
		r.e.SP()
	}
	r.items++
	r.e.BodySectionName(sec, r.names).SP()
	return nopCloser{r.e.Literal(size, false)}
}

// WriteBinarySection starts a BINARY section as a literal8 (RFC 3516
// §4.2), which may carry any octet.
func (r *fetchResponse) WriteBinarySection(sec *goimap.FetchItemBinarySection, size int64) io.WriteCloser {
	if r.items > 0 {
		r.e.SP()
	}
	r.items++
	r.e.BinarySectionName(sec).SP()
	return nopCloser{r.e.Literal(size, true)}
}

func (r *fetchResponse) WriteBinarySectionSize(sec *goimap.FetchItemBinarySectionSize, n uint32) {
	r.item("BINARY.SIZE[").SectionPart(sec.Part).Atom("] ").Number(n)
}

// Close ends the response.
func (r *fetchResponse) Close() error {
	r.e.Byte(')').CRLF()
	return r.e.Err()
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// updateWriter writes the untagged responses that report changes to the
// selected folder. From the IDLE goroutine (locked), each batch takes
// the connection's write lock and is flushed at once.
type updateWriter struct {
	c      *conn
	locked bool // false: the caller holds wmu already (the loop)
}

func (c *conn) updates() *updateWriter { return &updateWriter{c: c, locked: true} }

// batch runs f, which writes updates, under the write lock if needed.
func (w *updateWriter) batch(f func() error) error {
	if w.locked {
		return f()
	}
	w.c.wmu.Lock()
	defer w.c.wmu.Unlock()
	if err := f(); err != nil {
		return err
	}
	return w.c.enc.Flush()
}

func (w *updateWriter) WriteExpunge(seq uint32) error {
	w.c.enc.Atom("* ").Number(seq).Atom(" EXPUNGE").CRLF()
	return w.c.enc.Err()
}

func (w *updateWriter) WriteNumMessages(n uint32) error {
	w.c.enc.Atom("* ").Number(n).Atom(" EXISTS").CRLF()
	return w.c.enc.Err()
}

// WriteNumRecent writes RECENT, for IMAP4rev1 clients only.
func (w *updateWriter) WriteNumRecent(n uint32) error {
	if w.c.rev2 {
		return nil
	}
	w.c.enc.Atom("* ").Number(n).Atom(" RECENT").CRLF()
	return w.c.enc.Err()
}

// WriteMailboxFlags writes FLAGS and, in a folder the client may change,
// PERMANENTFLAGS with them (RFC 9051 §7.3.5, §7.1).
func (w *updateWriter) WriteMailboxFlags(flags []goimap.Flag, writable bool) error {
	e := w.c.enc
	e.Atom("* FLAGS ").Flags(flags).CRLF()
	if writable {
		e.Atom("* OK [PERMANENTFLAGS ").Flags(append(flags[:len(flags):len(flags)], goimap.FlagWildcard)).Atom("] Permanent flags").CRLF()
	}
	return e.Err()
}

// WriteMessageFlags writes a FETCH response with FLAGS (and the UID, if
// not 0).
func (w *updateWriter) WriteMessageFlags(seq uint32, uid goimap.UID, flags []goimap.Flag) error {
	r := (&fetchWriter{c: w.c, names: &wire.FetchNames{}}).CreateMessage(seq)
	if uid != 0 {
		r.WriteUID(uid)
	}
	r.WriteFlags(flags)
	return r.Close()
}

// WriteCopyData writes MOVE's COPYUID before its EXPUNGEs (RFC 6851 §4.3).
func (w *updateWriter) WriteCopyData(d *goimap.CopyData) error {
	w.c.enc.Status("*", goimap.StatusResponseTypeOK, copyUIDCode(d), "Moved")
	return w.c.enc.Err()
}

// listWriter writes LIST or LSUB responses.
type listWriter struct {
	c       *conn
	options *goimap.ListOptions
	lsub    bool
}

// WriteList writes one mailbox's LIST (or LSUB) response, with its
// CHILDINFO, and its STATUS after it for LIST-STATUS (RFC 5819).
func (w *listWriter) WriteList(d *goimap.ListData) error {
	e := w.c.enc
	if w.lsub {
		e.Atom("* LSUB (")
	} else {
		e.Atom("* LIST (")
	}
	for i, a := range d.Attrs {
		if i > 0 {
			e.SP()
		}
		e.Atom(string(a))
	}
	e.Atom(") ")
	if d.Delim == 0 {
		e.NIL()
	} else {
		e.Quoted(string(d.Delim))
	}
	e.SP().Mailbox(d.Mailbox)
	if d.ChildInfo != nil && !w.lsub {
		e.Atom(" (CHILDINFO (")
		if d.ChildInfo.Subscribed {
			e.Quoted("SUBSCRIBED")
		}
		e.Atom("))")
	}
	e.CRLF()
	if !w.lsub && w.options.ReturnStatus != nil && d.Status != nil {
		w.c.writeStatus(d.Status, w.options.ReturnStatus)
	}
	return e.Err()
}
