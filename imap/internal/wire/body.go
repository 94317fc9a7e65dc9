package wire

import (
	"mime"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	goimap "github.com/emersion/go-imap/v2"
)

// ENVELOPE and BODYSTRUCTURE (RFC 9051 §7.5.2, grammar in §9).

// Envelope is an ENVELOPE as it is sent (RFC 9051 §7.5.2): the fields'
// values as the message has them, "" for NIL.
type Envelope struct {
	Date, Subject                      string
	From, Sender, ReplyTo, To, Cc, Bcc []Address
	InReplyTo, MessageID               string
}

// Address is one address of an ENVELOPE. A group's start is an address
// with only Mailbox (the group's name), its end an address with nothing.
type Address struct{ Name, ADL, Mailbox, Host string }

// envelopeDate is how the date of a go-imap Envelope is written.
const envelopeDate = "Mon, 02 Jan 2006 15:04:05 -0700"

// EnvelopeOf converts go-imap's Envelope (which the library's
// ExtractBodyStructure gives for message/rfc822 parts), whose strings are
// decoded, for sending: non-ASCII text becomes encoded-words again.
func EnvelopeOf(env *goimap.Envelope) *Envelope {
	if env == nil {
		return nil
	}
	addrs := func(l []goimap.Address) []Address {
		var out []Address
		for _, a := range l {
			out = append(out, Address{Name: mime.QEncoding.Encode("utf-8", a.Name), Mailbox: a.Mailbox, Host: a.Host})
		}
		return out
	}
	out := &Envelope{
		Subject: mime.QEncoding.Encode("utf-8", env.Subject),
		From:    addrs(env.From), Sender: addrs(env.Sender), ReplyTo: addrs(env.ReplyTo),
		To: addrs(env.To), Cc: addrs(env.Cc), Bcc: addrs(env.Bcc),
	}
	if !env.Date.IsZero() {
		out.Date = env.Date.Format(envelopeDate)
	}
	if len(env.InReplyTo) > 0 {
		out.InReplyTo = "<" + strings.Join(env.InReplyTo, "> <") + ">"
	}
	if env.MessageID != "" {
		out.MessageID = "<" + env.MessageID + ">"
	}
	return out
}

// Envelope writes env (nil: every field NIL). A missing Sender or
// Reply-To is From (RFC 9051 §7.5.2).
func (e *Encoder) Envelope(env *Envelope) *Encoder {
	if env == nil {
		env = &Envelope{}
	}
	sender, replyTo := env.Sender, env.ReplyTo
	if len(sender) == 0 {
		sender = env.From
	}
	if len(replyTo) == 0 {
		replyTo = env.From
	}
	e.Byte('(').NString(env.Date).SP().text(env.Subject)
	for _, l := range [][]Address{env.From, sender, replyTo, env.To, env.Cc, env.Bcc} {
		e.SP().addresses(l)
	}
	return e.SP().NString(env.InReplyTo).SP().NString(env.MessageID).Byte(')')
}

// text writes header text as an nstring: as it is where the client takes
// UTF-8 or it is ASCII, as MIME encoded-words otherwise (a client that
// has not enabled UTF-8 may not expect 8-bit strings).
func (e *Encoder) text(s string) *Encoder {
	if !e.UTF8 && !isASCII(s) && utf8.ValidString(s) {
		s = mime.QEncoding.Encode("utf-8", s)
	}
	return e.NString(s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func (e *Encoder) addresses(l []Address) {
	if len(l) == 0 {
		e.NIL()
		return
	}
	e.Byte('(')
	for _, a := range l {
		e.Byte('(').text(a.Name).SP().NString(a.ADL).SP().text(a.Mailbox).SP().NString(a.Host).Byte(')')
	}
	e.Byte(')')
}

// BodyStructure writes bs, with the extension data when extended
// (BODYSTRUCTURE rather than BODY). A part without extension data gets
// NILs for it.
func (e *Encoder) BodyStructure(bs goimap.BodyStructure, extended bool) *Encoder {
	e.Byte('(')
	switch p := bs.(type) {
	case *goimap.BodyStructureSinglePart:
		e.singlePart(p, extended)
	case *goimap.BodyStructureMultiPart:
		e.multiPart(p, extended)
	default: // nothing known: an empty text part
		e.singlePart(&goimap.BodyStructureSinglePart{Type: "text", Subtype: "plain", Text: &goimap.BodyStructureText{}}, extended)
	}
	return e.Byte(')')
}

func (e *Encoder) singlePart(p *goimap.BodyStructureSinglePart, extended bool) {
	enc := strings.ToLower(p.Encoding) // Outlook for iOS wants lower case
	if enc == "" {
		enc = "7bit"
	}
	e.String(p.Type).SP().String(p.Subtype).SP().params(p.Params)
	e.SP().NString(p.ID).SP().NString(p.Description).SP().String(enc).SP().Number(p.Size)
	if m := p.MessageRFC822; m != nil {
		e.SP().Envelope(EnvelopeOf(m.Envelope)).SP().BodyStructure(m.BodyStructure, extended).SP().Number64(m.NumLines)
	} else if p.Text != nil {
		e.SP().Number64(p.Text.NumLines)
	}
	if !extended {
		return
	}
	ext := p.Extended
	if ext == nil {
		ext = &goimap.BodyStructureSinglePartExt{}
	}
	e.SP().NIL() // body-fld-md5
	e.SP().disposition(ext.Disposition).SP().languages(ext.Language).SP().NString(ext.Location)
}

func (e *Encoder) multiPart(p *goimap.BodyStructureMultiPart, extended bool) {
	for _, c := range p.Children { // no space between the parts (body-type-mpart)
		e.BodyStructure(c, extended)
	}
	if len(p.Children) == 0 { // 1*body: an empty text part stands in
		e.BodyStructure(nil, extended)
	}
	sub := p.Subtype
	if sub == "" {
		sub = "mixed"
	}
	e.SP().String(sub)
	if !extended {
		return
	}
	ext := p.Extended
	if ext == nil {
		ext = &goimap.BodyStructureMultiPartExt{}
	}
	e.SP().params(ext.Params).SP().disposition(ext.Disposition).SP().languages(ext.Language).SP().NString(ext.Location)
}

// params writes body-fld-param, sorted by name so that the output is
// the same every time.
func (e *Encoder) params(m map[string]string) *Encoder {
	if len(m) == 0 {
		return e.NIL()
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.Byte('(')
	for i, k := range keys {
		if i > 0 {
			e.SP()
		}
		e.String(k).SP().String(m[k])
	}
	return e.Byte(')')
}

func (e *Encoder) disposition(d *goimap.BodyStructureDisposition) *Encoder {
	if d == nil || d.Value == "" {
		return e.NIL()
	}
	return e.Byte('(').String(d.Value).SP().params(d.Params).Byte(')')
}

func (e *Encoder) languages(l []string) *Encoder {
	if len(l) == 0 {
		return e.NIL()
	}
	e.Byte('(')
	for i, s := range l {
		if i > 0 {
			e.SP()
		}
		e.String(s)
	}
	return e.Byte(')')
}

// SectionPart writes a section's part number ("1.2.3"), nothing for none.
func (e *Encoder) SectionPart(part []int) *Encoder {
	for i, n := range part {
		if i > 0 {
			e.Byte('.')
		}
		e.Atom(strconv.Itoa(n))
	}
	return e
}
