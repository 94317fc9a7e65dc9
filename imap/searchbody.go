package imap

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	gomessage "github.com/emersion/go-message"
)

// SEARCH BODY and TEXT: the message is read once, as a stream; only its
// text parts (text/*, message/*, or without a type) are decoded, each into
// a reused buffer, and the walk stops at the first part that matches.
// Matching is on Unicode case folding (cases.Fold); a part that is all
// ASCII, as most are, is only lower-cased, which folding does to ASCII.

// maxPartText bounds how much of one part is searched.
const maxPartText = 64 << 20

// bodyBufs recycles the buffers of bodyHas.
var bodyBufs = sync.Pool{New: func() any { return new(bodyBuf) }}

type bodyBuf struct{ text, low []byte }

// bodyHas reports whether the decoded text of the body contains want,
// which is already folded. A message go-message cannot parse is searched
// as its raw body.
func (l *lazy) bodyHas(want string) (found bool) {
	if want == "" {
		return true
	}
	bb := bodyBufs.Get().(*bodyBuf)
	defer func() {
		if cap(bb.text) <= 1<<20 && cap(bb.low) <= 1<<20 {
			bodyBufs.Put(bb)
		}
	}()
	check := func(r io.Reader) bool {
		var err error
		bb.text, err = readInto(bb.text[:0], io.LimitReader(r, maxPartText))
		if containsFold(bb.text, want, &bb.low) {
			found = true
		}
		return found || err != nil
	}
	func() {
		defer func() {
			if v := recover(); v != nil {
				// A bug a message can trigger: recorded, and the
				// raw body searched instead.
				if l.onPanic != nil {
					l.onPanic("SEARCH BODY", v)
				}
				if !found {
					l.rawBody(check)
				}
			}
		}()
		e, err := l.c.entity()
		if e == nil || (err != nil && !gomessage.IsUnknownCharset(err) && !gomessage.IsUnknownEncoding(err)) {
			l.rawBody(check)
			return
		}
		walkText(e, check, 0)
	}()
	return found
}

func (l *lazy) rawBody(check func(io.Reader) bool) {
	if r, err := l.c.body(); err == nil {
		check(r)
	}
}

// walkText calls check with the decoded body of each text or message
// part of e, in order, until it returns true (stop); it returns whether
// it stopped.
func walkText(e *gomessage.Entity, check func(io.Reader) bool, depth int) bool {
	if depth > 100 {
		return false
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if err != nil {
				if p == nil {
					return false
				}
			}
			if walkText(p, check, depth+1) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	return check(e.Body)
}

// readInto appends everything r has to b.
func readInto(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// containsFold reports whether text, case-folded, contains want (folded).
// low is scratch space.
func containsFold(text []byte, want string, low *[]byte) bool {
	if !isASCII(text) {
		return strings.Contains(folder.String(string(text)), want)
	}
	if !isASCII([]byte(want)) {
		return false // an ASCII text folds to ASCII
	}
	b := (*low)[:0]
	b = append(b, text...)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	*low = b
	return bytes.Contains(b, []byte(want))
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
