package sieve

import (
	"bufio"
	"io"
	"strings"

	gomessage "github.com/emersion/go-message"
	// Registers the charsets go-message decodes text parts from.
	_ "github.com/emersion/go-message/charset"
)

// bodyCache holds what body tests have read of the message, so that a
// script with many body tests reads and decodes the body once.
type bodyCache struct {
	raw      *string
	parts    []bodyPart
	hasParts bool
}

type bodyPart struct {
	ctype string // lower case type/subtype
	text  string // decoded (transfer encoding and charset)
}

// rawBody returns the body as it is, without the header (RFC 5173 §5.1),
// at most max octets.
func (m *Message) rawBody(max int) string {
	if m.body == nil {
		m.body = &bodyCache{}
	}
	if m.body.raw == nil {
		r := m.open()
		io.CopyN(io.Discard, r, int64(m.hdrLen))
		b, _ := io.ReadAll(io.LimitReader(r, int64(max)))
		s := string(b)
		m.body.raw = &s
	}
	return *m.body.raw
}

// decodedParts returns the leaf parts of the message, decoded, at most
// max octets of text in all.
func (m *Message) decodedParts(max int) []bodyPart {
	if m.body == nil {
		m.body = &bodyCache{}
	}
	if !m.body.hasParts {
		m.body.hasParts = true
		budget := max
		e, err := gomessage.Read(bufio.NewReader(m.open()))
		if e != nil && (err == nil || gomessage.IsUnknownCharset(err) || gomessage.IsUnknownEncoding(err)) {
			m.body.parts = walkParts(e, &budget, 0, m.body.parts)
		}
	}
	return m.body.parts
}

// maxMIMEDepth bounds how deeply nested multiparts are followed.
const maxMIMEDepth = 20

// partOverhead is what each entity (part or multipart) takes from the
// budget of decoded text besides its text, so that a message of many
// empty parts cannot make the list of parts (and the comparisons over
// it) grow without bound: with the default 1 MiB, at most 2,048.
const partOverhead = 512

func walkParts(e *gomessage.Entity, budget *int, depth int, out []bodyPart) []bodyPart {
	*budget -= partOverhead
	if depth > maxMIMEDepth || *budget <= 0 {
		return out
	}
	ctype, _, err := e.Header.ContentType()
	if err != nil || ctype == "" {
		ctype = "text/plain"
	}
	ctype = strings.ToLower(ctype)
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if p == nil || (err != nil && !gomessage.IsUnknownCharset(err) && !gomessage.IsUnknownEncoding(err)) {
				break
			}
			out = walkParts(p, budget, depth+1, out)
			if *budget <= 0 {
				break
			}
		}
		return out
	}
	if ctype == "message/rfc822" {
		inner, err := gomessage.Read(e.Body)
		if inner != nil && (err == nil || gomessage.IsUnknownCharset(err) || gomessage.IsUnknownEncoding(err)) {
			return walkParts(inner, budget, depth+1, out)
		}
		return out
	}
	b, _ := io.ReadAll(io.LimitReader(e.Body, int64(*budget)))
	*budget -= len(b)
	return append(out, bodyPart{ctype: ctype, text: string(b)})
}

// bodyValues returns the texts a body test compares (RFC 5173 §5).
func (r *run) bodyValues(t bodyTest) []string {
	max := r.limits.MaxBodySize
	if t.transform == bodyRaw {
		return []string{r.msg.rawBody(max)}
	}
	parts := r.msg.decodedParts(max)
	var types []string
	if t.transform == bodyText {
		types = []string{"text"}
	} else {
		for _, s := range t.types {
			types = append(types, strings.ToLower(r.expand(s)))
		}
	}
	var out []string
	for _, p := range parts {
		for _, want := range types {
			// "" is every part, "type" every subtype, "type/sub" one.
			if want == "" || p.ctype == want || (!strings.Contains(want, "/") && strings.HasPrefix(p.ctype, want+"/")) {
				out = append(out, p.text)
				break
			}
		}
	}
	return out
}
