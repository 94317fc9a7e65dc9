package mbox

import (
	"bytes"
	"io"
)

// fromPrefix is what makes a line look like a message separator once any
// leading '>' are counted (mboxrd: ^>*From ).
const fromPrefix = "From "

// quoter is the writer a message passes through on its way into the file:
// it turns CRLF into LF (mbox files are read by local tools that expect LF,
// as Postfix local(8) writes them) and quotes every line matching "^>*From "
// with one more '>' (mboxrd, so the quoting can be undone exactly). It
// streams: a line of any length, even one made of a million '>', is never
// held in memory, only counted.
type quoter struct {
	w io.Writer

	cr      bool  // a '\r' is pending: it is dropped if '\n' follows
	mid     bool  // inside a line whose start has been decided
	gt      int64 // '>' seen at the start of the current line, not yet written
	matched int   // bytes of fromPrefix seen after them, not yet written
	wrote   bool  // anything written yet
	last    byte  // the last byte written
	err     error
}

func newQuoter(w io.Writer) *quoter { return &quoter{w: w} }

// Write takes any chunk of the message; chunk boundaries may fall anywhere,
// even between '\r' and '\n'.
func (q *quoter) Write(p []byte) (int, error) {
	n := len(p)
	if q.err != nil {
		return 0, q.err
	}
	if q.cr && len(p) > 0 {
		q.cr = false
		if p[0] == '\n' {
			q.put([]byte{'\n'})
			p = p[1:]
		} else {
			q.put([]byte{'\r'})
		}
	}
	for len(p) > 0 && q.err == nil {
		i := bytes.IndexByte(p, '\r')
		if i < 0 {
			q.put(p)
			break
		}
		q.put(p[:i])
		if i+1 == len(p) {
			q.cr = true
			break
		}
		if p[i+1] == '\n' {
			q.put([]byte{'\n'})
			p = p[i+2:]
		} else {
			q.put([]byte{'\r'})
			p = p[i+1:]
		}
	}
	if q.err != nil {
		return 0, q.err
	}
	return n, nil
}

// Close writes what is still pending and ends the message with a newline
// if it has content and does not end with one. It does not close w.
func (q *quoter) Close() error {
	if q.cr {
		q.cr = false
		q.put([]byte{'\r'})
	}
	if !q.mid {
		q.flushPrefix()
	}
	if q.wrote && q.last != '\n' {
		q.write([]byte{'\n'})
	}
	return q.err
}

// put takes LF-normalised bytes and applies the quoting.
func (q *quoter) put(p []byte) {
	for len(p) > 0 && q.err == nil {
		if q.mid {
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				q.write(p)
				return
			}
			q.write(p[:i+1])
			p = p[i+1:]
			q.mid = false
			continue
		}
		c := p[0]
		switch {
		case q.matched == 0 && c == '>':
			q.gt++
			p = p[1:]
		case c == fromPrefix[q.matched]:
			q.matched++
			p = p[1:]
			if q.matched == len(fromPrefix) {
				q.write([]byte{'>'}) // the one added level
				q.flushPrefix()
				q.mid = true
			}
		default:
			// Not a From line: write what was held back and copy the
			// rest of the line, c included (it may be the '\n').
			q.flushPrefix()
			q.mid = true
		}
	}
}

// flushPrefix writes the '>' and the part of fromPrefix held back.
func (q *quoter) flushPrefix() {
	var gts [64]byte
	for i := range gts {
		gts[i] = '>'
	}
	for q.gt > 0 && q.err == nil {
		n := min(q.gt, int64(len(gts)))
		q.write(gts[:n])
		q.gt -= n
	}
	if q.matched > 0 {
		q.write([]byte(fromPrefix[:q.matched]))
		q.matched = 0
	}
}

func (q *quoter) write(p []byte) {
	if q.err != nil || len(p) == 0 {
		return
	}
	_, q.err = q.w.Write(p)
	q.wrote = true
	q.last = p[len(p)-1]
}
