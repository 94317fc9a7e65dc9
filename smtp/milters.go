package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/mda"
	"mailroom/milter"
)

// errDiscarded ends a transaction whose message a milter discarded: the
// client gets 250 and nothing is delivered (SMFIR_DISCARD).
var errDiscarded = errors.New("discarded by a milter")

// finish is the reply to a transaction that ended before delivery.
func (s *session) finish(err error) error {
	if errors.Is(err, errDiscarded) {
		return nil
	}
	return s.reply(err)
}

// milterReply makes a milter's reply an SMTP one.
func milterReply(r *milter.Reply) error {
	var c gosmtp.EnhancedCode
	for i, p := range strings.SplitN(r.Enhanced, ".", 3) {
		for _, d := range p {
			c[i] = c[i]*10 + int(d-'0')
		}
	}
	return &gosmtp.SMTPError{Code: r.Code, EnhancedCode: c, Message: r.Text}
}

// milterInfo describes the session to the milters.
func (s *session) milterInfo(id string) milter.ConnInfo {
	info := milter.ConnInfo{IP: s.ip, Port: s.port, Helo: s.helo, QueueID: id}
	info.Name, info.PTR = s.names()
	if s.tls != nil {
		info.TLS = tls.VersionName(s.tls.Version)
		info.Cipher = tls.CipherSuiteName(s.tls.CipherSuite)
	}
	if s.user != nil {
		info.AuthUser, info.AuthType = s.user.Address.String(), s.authMech
	}
	return info
}

// maxPTRNames bounds the PTR names of the client that are tried.
const maxPTRNames = 5

// names returns the client's verified host name (a PTR name one of whose
// addresses is the client's, forward-confirmed as Postfix's client name)
// and its first PTR name, "" where there is none or no Resolver. They
// are looked up once per session, within namesTimeout.
func (s *session) names() (verified, ptr string) {
	res := s.srv.opts.Auth.Resolver
	if s.namesDone || res == nil || s.ip == nil {
		return s.clientName, s.clientPTR
	}
	s.namesDone = true
	ctx, cancel := context.WithTimeout(s.ctx, namesTimeout)
	defer cancel()
	ptrs, err := res.LookupAddr(ctx, s.ip.String())
	if err != nil || len(ptrs) == 0 {
		s.log.Debug("no PTR name for the client", "err", err)
		return "", ""
	}
	s.clientPTR = strings.TrimSuffix(ptrs[0], ".")
	for _, name := range ptrs[:min(len(ptrs), maxPTRNames)] {
		ips, err := res.LookupIPAddr(ctx, name)
		if err == nil && slices.ContainsFunc(ips, func(a net.IPAddr) bool { return a.IP.Equal(s.ip) }) {
			s.clientName = strings.TrimSuffix(name, ".")
			break
		}
	}
	return s.clientName, s.clientPTR
}

// namesTimeout bounds the client name lookups of one session.
const namesTimeout = 10 * time.Second

// beginMilters starts the milters' part of a transaction at MAIL.
func (s *session) beginMilters(txn *mda.Txn, from string) (*milter.Txn, error) {
	if s.srv.opts.Auth.Milters == nil {
		return nil, nil
	}
	mt, r := s.srv.opts.Auth.Milters.Begin(s.ctx, s.milterInfo(txn.ID()), from)
	if r != nil {
		s.log.Info("sender refused by a milter", "event", "rejected", "from", from, "reply", r.Error())
		return nil, milterReply(r)
	}
	return mt, nil
}

// milterRcpt asks the milters about a recipient mda has accepted; a
// refusal takes it out of the transaction again.
func (s *session) milterRcpt(env *envelope, to string) error {
	if env.milter == nil {
		return nil
	}
	r := env.milter.Rcpt(s.ctx, to)
	if r == nil {
		return nil
	}
	s.log.Info("recipient refused by a milter", "event", "rejected", "from", env.from, "rcpt", to, "reply", r.Error())
	env.local = slices.DeleteFunc(env.local, func(a string) bool { return a == to })
	env.remote = slices.DeleteFunc(env.remote, func(a string) bool { return a == to })
	env.rebuild = true
	return milterReply(r)
}

// filter gives the message to the milters and carries out what they
// decided: a refusal, a discard, quarantine, a changed header or body,
// another sender, recipients added or removed.
func (s *session) filter(env *envelope, m *message) error {
	if env.milter == nil {
		if env.rebuild {
			return s.rebuild(env, env.from, nil, nil)
		}
		return nil
	}
	out := env.milter.Message(s.ctx, m.h, m.bodyReader, s.srv.opts.Auth.SpoolDir, s.srv.opts.MaxMessageBytes+(1<<20))
	if out.Body != nil {
		m.body = out.Body
	}
	switch {
	case out.Reply != nil:
		s.log.Info("message refused by a milter", "event", "rejected", "from", env.from, "reply", out.Reply.Error())
		return milterReply(out.Reply)
	case out.Discard:
		s.log.Info("message discarded by a milter", "event", "discarded", "from", env.from)
		return errDiscarded
	}
	m.h = out.Header
	if out.From != nil || len(out.Add) > 0 || len(out.Del) > 0 || env.rebuild {
		from := env.from
		if out.From != nil {
			from = *out.From
		}
		if err := s.rebuild(env, from, out.Add, out.Del); err != nil {
			return err
		}
	}
	if out.Quarantine != "" {
		env.quarantine = out.Quarantine
	}
	return nil
}

// rebuild starts the transaction over with sender from and the
// recipients left after del and add: mda takes no recipient back. A
// recipient the client was given 250 for at RCPT must still be taken:
// one refused now (its account gone meanwhile, say) fails the whole
// transaction with 451, so that the client tries again and learns of it
// at RCPT, rather than getting 250 for mail one recipient never gets. A
// recipient a milter added and mda refuses is left out (logged): the
// client never named it.
func (s *session) rebuild(env *envelope, from string, add, del []string) error {
	info := s.info()
	info.Internal = true // a rebuilt transaction's message is held
	txn, err := s.srv.opts.Deliverer.Begin(s.ctx, from, info)
	if err != nil {
		s.log.Warn("a milter's new sender is refused; keeping the old one", "from", from, "err", err)
		from = env.from
		if txn, err = s.srv.opts.Deliverer.Begin(s.ctx, from, info); err != nil {
			return err
		}
	}
	gone := func(a string) bool {
		return slices.ContainsFunc(del, func(d string) bool { return strings.EqualFold(d, a) })
	}
	accepted := append(slices.Clone(env.local), env.remote...)
	var local, remote []string
	for _, to := range append(slices.Clone(accepted), add...) {
		if gone(to) || slices.Contains(local, to) || slices.Contains(remote, to) {
			continue
		}
		err := txn.AddRcpt(s.ctx, to)
		switch {
		case err == nil:
			local = append(local, to)
		case errors.Is(err, mda.ErrNotLocal) && s.srv.opts.Role == Submission:
			remote = append(remote, to)
		case slices.Contains(accepted, to):
			txn.Abort()
			s.log.Warn("a recipient accepted at RCPT is refused now: the transaction fails", "from", env.from, "rcpt", to, "err", err)
			return errRcptLost
		case errors.Is(err, mda.ErrNotLocal):
			// The MX never relays, whoever asks (milters.go's
			// guard against a milter making it an open relay).
			s.log.Warn("a milter's recipient is not local; the MX does not relay", "rcpt", to)
		case temporary(err):
			txn.Abort()
			return err
		default:
			s.log.Warn("a milter's recipient is refused", "rcpt", to, "err", err)
		}
	}
	if len(local)+len(remote) == 0 {
		txn.Abort()
		s.log.Info("a milter removed every recipient: nothing to deliver", "event", "discarded", "from", env.from)
		return errDiscarded
	}
	env.txn.Abort()
	env.txn, env.from, env.local, env.remote, env.rebuild = txn, from, local, remote, false
	return nil
}

// errRcptLost fails a transaction that can no longer deliver to every
// recipient the client was told it would.
var errRcptLost = &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0},
	Message: "A recipient is no longer accepted; try again"}

// temporary reports an error that is not the recipient's fault.
func temporary(err error) bool {
	var t interface{ Temporary() bool }
	if errors.As(err, &t) {
		return t.Temporary()
	}
	return !errors.Is(err, mda.ErrNoSuchUser) && !errors.Is(err, mda.ErrBadAddress) && !errors.Is(err, mda.ErrLoop)
}
