package smtpconn

import (
	"bytes"
	"fmt"
)

// go-smtp v0.26 answers a command given out of sequence (DATA or BDAT with
// no accepted recipient, RCPT before MAIL, MAIL before HELO/LHLO) with 502
// "command not implemented". RFC 5321 §4.2.4 and RFC 2033 §4.2 want 503
// "bad sequence of commands". The library offers no hook for those replies,
// so they are corrected on their way out (conns.Options.Rewrite), which
// sees them only outside TLS. Drop this when the library is fixed.
var sequenceReplies = [][]byte{
	[]byte("502 5.5.1 Missing RCPT TO command."),
	[]byte("502 5.5.1 Missing MAIL FROM command."),
	[]byte("502 5.5.1 Please introduce yourself first."),
}

// go-smtp answers undecodable base64 in AUTH with 454 4.7.0 (try later);
// RFC 4954 §4 wants 501 5.5.2. Like the others, this can be corrected only
// outside TLS.
var (
	base64Reply      = []byte("454 4.7.0 Invalid base64 data")
	base64ReplyFixed = []byte("501 5.5.2 Invalid base64 data")
)

// fixReply returns the corrected form of a reply line, or nil if it is
// right as it is. go-smtp writes through textproto, which flushes after
// every line, so each write is one whole line (outside TLS).
func fixReply(p []byte, announceSize int64) []byte {
	for _, r := range sequenceReplies {
		if bytes.HasPrefix(p, r) {
			q := bytes.Clone(p)
			copy(q, "503")
			return q
		}
	}
	if bytes.HasPrefix(p, base64Reply) {
		q := bytes.Clone(p)
		copy(q, base64ReplyFixed)
		return q
	}
	// go-smtp v0.26 refuses a message of exactly MaxMessageBytes (its data
	// reader gives up at the limit before seeing the final dot), although
	// RFC 1870 says the announced size is accepted. A server that can
	// rewrite its replies (no TLS: LMTP) runs the library without a limit,
	// enforces the limit itself, and gets its number announced here.
	if announceSize > 0 && len(p) > 4 && bytes.Equal(p[4:], []byte("SIZE\r\n")) {
		return fmt.Appendf(nil, "%sSIZE %d\r\n", p[:4], announceSize)
	}
	return nil
}
