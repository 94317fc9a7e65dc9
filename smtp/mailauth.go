package smtp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/internal/msghdr"
	"mailroom/internal/spool"
	"mailroom/mailauth"
	"mailroom/mailauth/dkim"
	"mailroom/milter"
)

// MailAuth is what a Server does for mail authentication and filtering,
// beyond the SMTP protocol itself.
type MailAuth struct {
	// Signer DKIM-signs every submitted message whose From: domain has a
	// key (Submission only; mail received on the MX is never signed).
	// *dkim.Signer implements it.
	Signer Signer
	// Checker, if set, checks mail received on the MX (SPF, DKIM,
	// DMARC), adds Authentication-Results and applies the policy (MX
	// only: submission is authenticated, LMTP is behind an MTA that did
	// its own checks).
	Checker *mailauth.Checker
	// AuthServID names this server in Authentication-Results; fields
	// that claim it in mail from untrusted clients of the MX are removed
	// (RFC 8601 §5), whether Checker is set or not: this host's users'
	// software believes them. On submission they are removed from every
	// message, the trusted networks' too: only the MX writes them, and a
	// user (or a webmail on this host) must not hand a colleague a
	// "dmarc=pass" for a From: of somebody else's. "" removes nothing.
	AuthServID string
	// Trusted are client networks whose mail is taken as it is, neither
	// checked nor changed, its Authentication-Results kept (the host
	// itself, a content filter that re-injects mail it has seen):
	// opendmarc's IgnoreHosts.
	Trusted []netip.Prefix
	// Milters filter each transaction in turn ([smtp] milters, or
	// [submission]'s).
	Milters *milter.Client
	// Resolver finds the client's host name for the milters
	// ({client_name}, forward-confirmed); nil gives them "unknown".
	// *resolve.Resolver implements it.
	Resolver NameResolver
	// SpoolDir holds messages too large for memory while they are
	// signed, checked or filtered ("" for the system's temporary
	// directory). Files there are unlinked at once.
	SpoolDir string
}

// Signer returns the DKIM-Signature fields for a message, "" when its
// From: domain has no key; an error wrapping dkim.ErrNoFrom means the
// message cannot be attributed to a domain and goes out unsigned.
type Signer interface {
	// SignHeader signs the message of header h and the body read from
	// body: the session holds the header as fields already.
	SignHeader(h msghdr.Header, body io.Reader) (string, error)
	// Signs reports whether mail From: domain is signed.
	Signs(domain string) bool
}

var _ Signer = (*dkim.Signer)(nil)

// NameResolver is the DNS the client's host name is looked up in.
type NameResolver interface {
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// maxCheckedHeader bounds the header of a message checked on the MX.
const maxCheckedHeader = 1 << 20

var errHeaderTooBig = &gosmtp.SMTPError{Code: 552, EnhancedCode: gosmtp.EnhancedCode{5, 3, 4}, Message: "Message header too large"}

// trusted reports whether the client's mail is taken unchecked.
func (s *session) trusted() bool {
	if s.ip == nil {
		return true // a unix socket: this host
	}
	ip, ok := netip.AddrFromSlice(s.ip)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range s.srv.opts.Auth.Trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// holds reports whether the session's messages are held (hold) to be
// checked, stripped of forged fields, filtered or signed before
// delivery, as receive and submit decide. mda must not apply
// max_message_bytes to them again (mda.Info.Internal): go-smtp has
// applied it to what the client sent, and the fields added since
// (Authentication-Results, a milter's, a DKIM signature) must not push
// an accepted message over it into a 552 the client cannot help.
func (s *session) holds() bool {
	a := s.srv.opts.Auth
	switch {
	case a.Milters != nil:
		return true
	case s.srv.opts.Role == Submission:
		return a.Signer != nil || a.AuthServID != ""
	}
	return (a.Checker != nil || a.AuthServID != "") && !s.trusted()
}

// message is a received message held while it is checked, filtered
// and signed: the header as fields, which those steps change, and the
// body, as received or as a milter replaced it.
type message struct {
	sp   *spool.Spool
	h    msghdr.Header
	off  int64        // where the body starts in sp
	body *spool.Spool // a milter's replacement; nil: sp's
}

// hold reads the message from r. A header over maxCheckedHeader is
// refused (552 5.3.4); any other failure (the client gone, the spool)
// is answered as what it is by reply.
func (s *session) hold(r io.Reader) (*message, error) {
	sp := spool.New(s.srv.opts.Auth.SpoolDir, 0)
	if _, err := sp.ReadFrom(r); err != nil {
		sp.Close()
		return nil, err
	}
	h, off, err := s.header(sp.Reader(0))
	if err != nil {
		sp.Close()
		return nil, err
	}
	return &message{sp: sp, h: h, off: int64(off)}, nil
}

// headerReaders are the buffers held messages' headers are read through
// (64 KiB: the longest header line taken), reused: a new one per message
// was most of the garbage a signed or checked message made.
var headerReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// header reads the header of a spooled message from r: too long is the
// client's doing (552 5.3.4), anything else a failure of ours that reply
// makes a 451.
func (s *session) header(r io.Reader) (msghdr.Header, int, error) {
	br := headerReaders.Get().(*bufio.Reader)
	br.Reset(r)
	h, off, err := msghdr.Read(br, maxCheckedHeader)
	br.Reset(nil)
	headerReaders.Put(br)
	switch {
	case errors.Is(err, msghdr.ErrTooLong):
		s.log.Info("message refused", "event", "rejected", "err", err)
		return nil, 0, errHeaderTooBig
	case err != nil:
		return nil, 0, fmt.Errorf("read the spooled header: %w", err)
	}
	return h, off, nil
}

// wellFormed refuses a message whose header has a line that is not a
// field before the empty line (550 5.6.0): checks, milters and signing
// would judge it by one reading of where its header ends, and mail
// readers may take another (RFC 5322 §2.2 has no room for such a line).
func (s *session) wellFormed(env *envelope, m *message) error {
	var fe *msghdr.FieldError
	if err := m.h.Check(); errors.As(err, &fe) {
		s.log.Info("message refused", "event", "rejected", "from", env.from, "reason", "malformed header", "line", fe.Line)
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 6, 0},
			Message: fmt.Sprintf("Message header malformed: line %d is not a header field (RFC 5322 section 2.2)", fe.Line)}
	}
	return nil
}

func (m *message) bodyReader() io.Reader {
	if m.body != nil {
		return m.body.Reader(0)
	}
	return m.sp.Reader(m.off)
}

// reader is the message as it now is.
func (m *message) reader() io.Reader {
	return io.MultiReader(bytes.NewReader(m.h.Bytes()), m.bodyReader())
}

func (m *message) close() {
	m.sp.Close()
	if m.body != nil {
		m.body.Close()
	}
}

// receive delivers a message taken on the MX. Unless the client is
// trusted, Authentication-Results fields claiming this server are
// removed and the message is checked; then the milters filter it.
func (s *session) receive(env *envelope, r io.Reader) error {
	a := s.srv.opts.Auth
	untrusted := !s.trusted()
	checking := a.Checker != nil && untrusted
	stripping := a.AuthServID != "" && untrusted
	if !checking && !stripping && env.milter == nil && !env.rebuild {
		return s.reply(env.txn.DeliverAll(s.ctx, r))
	}
	m, err := s.hold(r)
	if err != nil {
		return s.reply(err)
	}
	defer m.close()
	if checking || env.milter != nil {
		if err := s.wellFormed(env, m); err != nil {
			return err
		}
	}
	if stripping {
		s.stripForged(env, m)
	}
	if checking {
		if err := s.check(env, m); err != nil {
			return err
		}
	}
	if err := s.filter(env, m); err != nil {
		return s.finish(err)
	}
	env.applyQuarantine()
	return s.reply(env.txn.DeliverAll(s.ctx, m.reader()))
}

// stripForged removes the Authentication-Results fields that claim
// this server's authserv-id (RFC 8601 §5).
func (s *session) stripForged(env *envelope, m *message) {
	id := s.srv.opts.Auth.AuthServID
	if id == "" {
		return
	}
	var forged int
	if m.h, forged = mailauth.StripForged(m.h, id); forged > 0 {
		s.log.Debug("forged Authentication-Results removed", "from", env.from, "fields", forged)
	}
}

// check runs SPF, DKIM and DMARC, adds Authentication-Results and
// applies the policy (RFC 7489 §6.7: a rejection is a 550 at the end of
// DATA, so that no bounce goes to a forged sender).
func (s *session) check(env *envelope, m *message) error {
	a := s.srv.opts.Auth
	res := a.Checker.Check(s.ctx, mailauth.Envelope{IP: s.ip, Helo: s.helo, MailFrom: env.from}, m.h, m.sp.Reader(0))
	if res.Err != nil {
		return s.reply(fmt.Errorf("check the message: %w", res.Err))
	}
	dkimResults := make([]string, len(res.DKIM))
	for i, d := range res.DKIM {
		dkimResults[i] = d.Result + ":" + d.Domain
	}
	s.log.Debug("checked", "from", env.from, "spf", string(res.SPF.Result), "dkim", dkimResults,
		"dmarc", res.DMARC.Result, "dmarc_domain", res.DMARC.Domain, "malformed_from", res.DMARC.MalformedFrom,
		"action", res.Action.String(), "reason", res.Reason, "lookups", res.Lookups)
	switch res.Action {
	case mailauth.Reject:
		s.log.Info("message refused", "event", "rejected", "from", env.from, "reason", res.Reason)
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "Message refused: " + res.Reason}
	case mailauth.Defer:
		// RFC 7489 §6.6.2 and RFC 7208 §8.6: a temporary failure asks
		// the sender to try again, never to give up.
		s.log.Info("message deferred", "event", "deferred", "from", env.from, "reason", res.Reason)
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 7, 0}, Message: "Try again later: " + res.Reason}
	case mailauth.Quarantine:
		env.quarantine = res.Reason
	}
	m.h = append(msghdr.Header{res.Header(a.AuthServID)}, m.h...)
	return nil
}

// errFromNotOwned refuses a submitted message whose From: names a
// colleague, or cannot be read, in a domain that mailroom signs for.
func errFromNotOwned(what string) error {
	return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1},
		Message: "From: header " + what + " not owned by the authenticated user"}
}

// authorOwned checks the From: field of a submitted message against the
// login before it is signed, as MAIL FROM is checked (owns): every
// address of a domain that the Signer signs for must be the user's own
// (with or without an extension) or an alias that reaches the user's
// mailbox, and a From: that does not parse as addresses must not name
// such a domain at all. Otherwise the message is refused (550 5.7.1 at
// the end of DATA): our signature would make a receiver's DMARC pass a
// message in a colleague's name, and so would SPF, aligned through the
// user's own envelope, were it sent unsigned. Addresses of other
// domains (a foreign From:, or a local domain without a key) are not
// ours to vouch for: such a message goes out unsigned, and the
// receiving side judges it by that domain's own policy, as it would
// from Postfix with opendkim (docs/design/dkim.md).
func (s *session) authorOwned(env *envelope, h msghdr.Header) error {
	signer := s.srv.opts.Auth.Signer
	domains, malformed := h.AuthorDomains()
	signed := slices.ContainsFunc(domains, signer.Signs)
	if !signed {
		return nil
	}
	addrs, err := h.FromAddresses()
	if malformed || err != nil {
		s.log.Info("message refused", "event", "rejected", "user", s.user.Address.String(), "from", env.from,
			"reason", "From: header unreadable", "from_header", h.Get("From"))
		return errFromNotOwned("unreadable, naming a signed domain,")
	}
	for _, a := range addrs {
		at := strings.LastIndexByte(a, '@')
		if !signer.Signs(a[at+1:]) || s.owns(a) {
			continue
		}
		s.log.Info("message refused", "event", "rejected", "user", s.user.Address.String(), "from", env.from,
			"reason", "From: header not owned", "from_header", a)
		return errFromNotOwned("address <" + a + ">")
	}
	return nil
}

// signature DKIM-signs the message as it now is. A message whose author
// cannot be told (no usable From:) is passed on unsigned, as Postfix with
// opendkim does: the receiving side judges it, and refusing the user's
// mail would help nobody.
func (s *session) signature(m *message) (string, error) {
	sig, err := s.srv.opts.Auth.Signer.SignHeader(m.h, m.bodyReader())
	switch {
	case errors.Is(err, dkim.ErrNoFrom):
		s.log.Debug("not DKIM-signed: no usable From: field", "err", err)
		return "", nil
	case err != nil:
		return "", err
	case sig == "":
		s.log.Debug("not DKIM-signed: no key for the From: domain")
	}
	return sig, nil
}
