package dkim

import (
	"bufio"
	"crypto"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"mailroom/internal/msghdr"
)

// Key is one signing key: a domain (d=) and selector (s=) whose DNS
// record publishes the public half.
type Key struct {
	Domain   string
	Selector string
	Signer   crypto.Signer
}

// Signer signs messages with the keys of their From: domain. It is safe
// for concurrent use.
type Signer struct {
	keys map[string][]Key // domain -> its keys, in configuration order
}

// NewSigner checks the keys and returns a Signer. Several keys of one
// domain all sign (RSA and Ed25519 dual signing, RFC 8463 §1; or a key
// rollover).
func NewSigner(keys []Key) (*Signer, error) {
	s := &Signer{keys: map[string][]Key{}}
	for _, k := range keys {
		d := strings.ToLower(strings.TrimSuffix(k.Domain, "."))
		if d == "" {
			return nil, errors.New("dkim: a key without a domain")
		}
		if err := CheckSelector(k.Selector); err != nil {
			return nil, fmt.Errorf("dkim: %s: %w", d, err)
		}
		if k.Signer == nil || Algorithm(k.Signer.Public()) == "" {
			return nil, fmt.Errorf("dkim: %s selector %s: no usable RSA or Ed25519 key", d, k.Selector)
		}
		k.Domain = d
		s.keys[d] = append(s.keys[d], k)
	}
	return s, nil
}

// CheckSelector accepts a selector (RFC 6376 §3.1: sub-domain labels
// separated by dots).
func CheckSelector(sel string) error {
	if sel == "" {
		return errors.New("empty selector")
	}
	for label := range strings.SplitSeq(sel, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' ||
			strings.ContainsFunc(label, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-')
			}) {
			return fmt.Errorf("selector %q: use letters, digits and hyphens (dots between labels)", sel)
		}
	}
	return nil
}

// KeysFor returns the keys that sign mail from domain: its own, or those
// of its closest parent that has keys (d=example.org signs mail From:
// MAILER-DAEMON@mx.example.org, which DMARC's relaxed alignment accepts,
// RFC 7489 §3.1.1). Nil means the domain is not ours to sign.
func (s *Signer) KeysFor(domain string) []Key {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	for d := domain; d != ""; {
		if k := s.keys[d]; k != nil {
			return k
		}
		_, parent, ok := strings.Cut(d, ".")
		if !ok || !strings.Contains(parent, ".") {
			// Never sign for a top-level domain.
			return nil
		}
		d = parent
	}
	return nil
}

// Signs reports whether mail From: domain would be signed (KeysFor has
// keys for it): the submission server lets a user put only their own
// addresses of such a domain in From:, since the signature vouches for
// them.
func (s *Signer) Signs(domain string) bool { return len(s.KeysFor(domain)) > 0 }

// ErrNoFrom is a message Sign cannot attribute to a domain: no From:
// field, or one that does not parse. Such a message goes out unsigned.
var ErrNoFrom = errors.New("no parsable From: address")

// maxHeader bounds the header Sign reads before the body (the same order
// of size as SMTP's whole-message limits allow for a header).
const maxHeader = 1 << 20

// readerSize is the buffer Sign reads a message's header through: the
// longest header line it takes (msghdr.Read), as the SMTP server reads
// the header of a held message.
const readerSize = 64 << 10

// chunkSize is how much of the message Sign hands each go-msgauth signer
// per Write.
const chunkSize = 64 << 10

// Buffers are reused: a fresh 64 KiB reader and chunk per message were
// most of the garbage signing made (100 KiB per 4 KiB message) and a
// tenth of its CPU time in allocation, zeroing and collection.
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readerSize) }}
	chunkPool  = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize); return &b }}
)

// Sign reads a message (header and body, with CRLF or bare LF line ends)
// from r and returns the DKIM-Signature fields to put before it, each
// ending in CRLF: one per key of the From: domain, relaxed/relaxed (RFC
// 6376 §3.4), over the header fields of SignedHeaders. It returns "" when
// no key applies. The message is signed as the queue sends it, with bare
// LFs made CRLF.
func (s *Signer) Sign(r io.Reader) (string, error) {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() {
		br.Reset(nil)
		readerPool.Put(br)
	}()
	h, _, err := msghdr.Read(br, maxHeader)
	if err != nil {
		return "", fmt.Errorf("dkim: %w", err)
	}
	return s.SignHeader(h, br)
}

// SignHeader is Sign for a message whose header has been read already
// (the SMTP server holds it as fields): h, then the body from body. It
// saves reading and splitting the header a second time.
func (s *Signer) SignHeader(h msghdr.Header, body io.Reader) (string, error) {
	domains, err := h.FromDomains()
	if err != nil || len(domains) == 0 {
		return "", fmt.Errorf("dkim: %w", ErrNoFrom)
	}
	// RFC 7489 §6.6.1: with several From: addresses the first one's
	// domain is the one a receiver looks at.
	keys := s.KeysFor(domains[0])
	if len(keys) == 0 {
		return "", nil
	}
	headerKeys := SignedHeaders(h)
	signers := make([]*msgdkim.Signer, 0, len(keys))
	defer func() {
		// Ends the goroutines of signers not closed below (an error).
		for _, sg := range signers {
			if sg != nil {
				sg.Close()
			}
		}
	}()
	for _, k := range keys {
		sg, err := msgdkim.NewSigner(&msgdkim.SignOptions{
			Domain:                 k.Domain,
			Selector:               k.Selector,
			Signer:                 k.Signer,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: msgdkim.CanonicalizationRelaxed,
			BodyCanonicalization:   msgdkim.CanonicalizationRelaxed,
			HeaderKeys:             headerKeys,
		})
		if err != nil {
			return "", fmt.Errorf("dkim: %s selector %s: %w", k.Domain, k.Selector, err)
		}
		signers = append(signers, sg)
	}
	// Bare LFs need no rewriting here: go-msgauth's relaxed body
	// canonicalization makes them CRLF itself (as the queue does when it
	// sends), and relaxed header canonicalization unfolds lines and drops
	// their ends (RFC 6376 §3.4.2), so a message signs the same with
	// either line end (TestBareLFSignsAsCRLF).
	bp := chunkPool.Get().(*[]byte)
	c := chunker{signers: signers, buf: (*bp)[:0]}
	defer func() {
		*bp = c.buf[:0]
		chunkPool.Put(bp)
	}()
	for _, f := range h {
		if err := c.write(f.Raw); err != nil {
			return "", fmt.Errorf("dkim: sign: %w", err)
		}
	}
	if err := c.write([]byte("\r\n")); err != nil {
		return "", fmt.Errorf("dkim: sign: %w", err)
	}
	if err := c.readFrom(body); err != nil {
		return "", err
	}
	var out strings.Builder
	for i, sg := range signers {
		err := sg.Close()
		signers[i] = nil
		if err != nil {
			return "", fmt.Errorf("dkim: %s selector %s: %w", keys[i].Domain, keys[i].Selector, err)
		}
		out.WriteString(sg.Signature())
	}
	return out.String(), nil
}

// chunker hands the message to each signer in writes of up to chunkSize
// octets. A go-msgauth Signer reads what it is written through an
// io.Pipe from a goroutine of its own, so every Write is a hand-over
// between goroutines and back: the header fields written one by one
// cost more than hashing them.
type chunker struct {
	signers []*msgdkim.Signer
	buf     []byte // cap chunkSize
}

// write appends p, passing on each chunk that fills up.
func (c *chunker) write(p []byte) error {
	for len(p) > 0 {
		n := copy(c.buf[len(c.buf):cap(c.buf)], p)
		c.buf = c.buf[:len(c.buf)+n]
		p = p[n:]
		if len(c.buf) == cap(c.buf) {
			if err := c.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// readFrom reads r to its end into the chunks, then passes on the last.
func (c *chunker) readFrom(r io.Reader) error {
	for {
		n, err := r.Read(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+n]
		if len(c.buf) == cap(c.buf) {
			if err := c.flush(); err != nil {
				return fmt.Errorf("dkim: sign: %w", err)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("dkim: read message: %w", err)
		}
	}
	if err := c.flush(); err != nil {
		return fmt.Errorf("dkim: sign: %w", err)
	}
	return nil
}

func (c *chunker) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	for _, sg := range c.signers {
		if _, err := sg.Write(c.buf); err != nil {
			return err
		}
	}
	c.buf = c.buf[:0]
	return nil
}

// signedFields are the fields signed when present: RFC 6376 §5.4.1's
// list (opendkim's default SignHeaders), Message-ID, the MIME fields that
// decide how the body is read, and List-Unsubscribe-Post (RFC 8058 §4
// requires it signed). Each is signed as often as it occurs.
var signedFields = []string{
	"From", "Reply-To", "Subject", "Date", "To", "Cc",
	"Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc",
	"In-Reply-To", "References", "Message-ID", "Sender",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Unsubscribe-Post",
	"List-Subscribe", "List-Post", "List-Owner", "List-Archive",
}

// SignedHeaders is the h= list for a message with header h: every
// instance of signedFields present, and From once more (oversigned, RFC
// 6376 §8.15), so that a From: added later breaks the signature rather
// than showing a forged author to readers who see the first one.
func SignedHeaders(h msghdr.Header) []string {
	var keys []string
	for _, name := range signedFields {
		n := h.Count(name)
		if name == "From" {
			n++
		}
		for range n {
			keys = append(keys, name)
		}
	}
	return keys
}
