package smtp

import (
	"errors"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"mailroom/internal/authdelay"
	"mailroom/internal/saslogin"
)

// AuthMechanisms offers PLAIN and LOGIN (RFC 4954) on submission, and only
// where a password cannot be read on the wire: over TLS, on loopback, or
// where the administrator allowed it. Offering nothing keeps AUTH out of
// the EHLO reply.
func (s *session) AuthMechanisms() []string {
	if s.srv.opts.Role != Submission || s.srv.opts.Accounts == nil {
		return nil
	}
	if s.tls == nil && !s.loopback && !s.srv.opts.AllowInsecureAuth {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

var errMechanism = &gosmtp.SMTPError{Code: 504, EnhancedCode: gosmtp.EnhancedCode{5, 5, 4}, Message: "Unrecognized authentication type"}

// errEncryptionRequired is RFC 4954 §6's answer to AUTH without TLS.
var errEncryptionRequired = &gosmtp.SMTPError{Code: 538, EnhancedCode: gosmtp.EnhancedCode{5, 7, 11}, Message: "Encryption required for requested authentication mechanism"}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if s.srv.opts.Role != Submission {
		return nil, gosmtp.ErrAuthUnsupported
	}
	if len(s.AuthMechanisms()) == 0 {
		return nil, errEncryptionRequired
	}
	if err := s.throttled(""); err != nil {
		return nil, err
	}
	// Milters are told which mechanism authenticated the user
	// ({auth_type}); s.user is set only once one has.
	s.authMech = strings.ToUpper(mech)
	switch s.authMech {
	case sasl.Plain:
		return saslErrors{sasl.NewPlainServer(func(identity, username, password string) error {
			// RFC 4616: an authorization identity other than the
			// user's own would mean acting for someone else.
			if identity != "" && !strings.EqualFold(identity, username) {
				return s.authFailed(username, errors.New("authorization identity differs"))
			}
			return s.authenticate(username, password)
		})}, nil
	case sasl.Login:
		return saslErrors{saslogin.NewServer(s.authenticate)}, nil
	}
	return nil, errMechanism
}

var errBadSASL = &gosmtp.SMTPError{Code: 501, EnhancedCode: gosmtp.EnhancedCode{5, 5, 2}, Message: "Invalid AUTH response"}

// saslErrors keeps a mechanism's own error text (go-sasl's "sasl: invalid
// response") from reaching the client as a 454 (try later): a malformed
// response is the client's error, 501 5.5.2 (RFC 4954 §4).
type saslErrors struct{ sasl.Server }

func (s saslErrors) Next(response []byte) ([]byte, bool, error) {
	c, done, err := s.Server.Next(response)
	var se *gosmtp.SMTPError
	if err != nil && !errors.As(err, &se) {
		err = errBadSASL
	}
	return c, done, err
}

// errThrottled answers an attempt from an address that must still wait
// after its failures (RFC 4954 §6: 454 4.7.0 is a temporary
// authentication failure).
var errThrottled = &gosmtp.SMTPError{Code: 454, EnhancedCode: gosmtp.EnhancedCode{4, 7, 0}, Message: "Too many failed logins from your address, try again later"}

// throttled refuses an attempt from an address that the shared throttle
// holds back after its failures, without looking at the password, so
// that a right one is answered exactly as a wrong one; the refusal counts
// as a failed attempt on this connection.
func (s *session) throttled(username string) error {
	wait, ok := s.srv.throttle.Allow(s.client, username)
	if ok {
		return nil
	}
	s.log.Warn("authentication refused: too many failures from this address", "event", "auth_throttled", "user", username, "wait", wait.Round(time.Millisecond))
	s.attemptFailed()
	return errThrottled
}

// attemptFailed counts a failed or refused attempt on the connection and
// closes it after the reply to the last one allowed (as Dovecot does), so
// that a guesser must come back through the connection limits.
func (s *session) attemptFailed() {
	s.authFails++
	if s.authFails >= authdelay.MaxPerConn {
		s.conn.CloseAfterWrite()
	}
}

// authenticate checks a password. Failures are logged with the client's
// address and the user name, never the password, and make the address
// wait before its next attempt, on every connection and protocol.
func (s *session) authenticate(username, password string) error {
	if err := s.throttled(username); err != nil {
		return err
	}
	acct, err := s.srv.opts.Accounts.Authenticate(username, password)
	if err != nil {
		return s.authFailed(username, err)
	}
	s.user = &acct
	s.log = s.log.With("user", acct.Address.String())
	s.log.Info("authenticated", "event", "auth")
	return nil
}

func (s *session) authFailed(username string, err error) error {
	wait := s.srv.throttle.Fail(s.client, username)
	s.log.Warn("authentication failed", "event", "auth_failed", "user", username, "wait", wait, "err", err)
	s.attemptFailed()
	return gosmtp.ErrAuthFailed
}
