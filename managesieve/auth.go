package managesieve

import (
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/emersion/go-sasl"

	"mailroom/account"
	"mailroom/internal/authdelay"
	"mailroom/internal/saslogin"
)

// AUTHENTICATE (RFC 5804 §2.1) with PLAIN (RFC 4616) and LOGIN, and
// UNAUTHENTICATE (§2.14.1).

var (
	errEncryptNeeded = no("ENCRYPT-NEEDED", "TLS is required to authenticate")
	errAuthFailed    = no("", "Authentication failed")
	// errThrottled answers an attempt from an address that must still
	// wait after its failures.
	errThrottled = no("TRYLATER", "Too many failed logins from your address, try again later")
)

func (c *conn) cmdAuthenticate(args []arg) error {
	mech := strings.ToUpper(args[0].s)
	if mech != sasl.Plain && mech != sasl.Login {
		return no("", "Only PLAIN and LOGIN are supported")
	}
	if !c.canAuth() {
		return errEncryptNeeded
	}
	if err := c.throttled(""); err != nil {
		return err
	}
	var loginErr error
	check := func(username, password string) error {
		loginErr = c.login(username, password)
		return loginErr
	}
	var server sasl.Server
	if mech == sasl.Plain {
		server = sasl.NewPlainServer(func(identity, username, password string) error {
			// RFC 4616: an authorization identity other than the
			// user's own would mean acting for someone else.
			if identity != "" && !strings.EqualFold(identity, username) {
				loginErr = c.authFailed(username, errors.New("authorization identity differs"))
				return loginErr
			}
			return check(username, password)
		})
	} else {
		server = saslogin.NewServer(check)
	}
	var resp []byte
	if len(args) == 2 {
		b, err := decodeSASL(args[1].s)
		if err != nil {
			return err
		}
		resp = b
	}
	for {
		challenge, done, err := server.Next(resp)
		if loginErr != nil {
			return loginErr
		}
		if err != nil {
			return no("", "Invalid SASL response")
		}
		if done {
			break
		}
		// RFC 5804 §2.1: a challenge is a string; the client answers
		// with one, or "*" to cancel.
		c.enc.str(base64.StdEncoding.EncodeToString(challenge)).raw("\r\n")
		if err := c.enc.flush(); err != nil {
			c.done = true
			return nil
		}
		line, err := c.saslResponse()
		if err != nil {
			return err
		}
		if line == "*" {
			return no("", "Authentication cancelled")
		}
		if resp, err = decodeSASL(line); err != nil {
			return err
		}
	}
	c.enc.response("OK", "", "Logged in")
	return nil
}

// saslResponse reads the client's answer to a challenge: one string on a
// line of its own.
func (c *conn) saslResponse() (string, error) {
	c.dec.begin()
	c.dec.preAuth = true
	a, err := c.dec.arg()
	if err == nil {
		err = c.dec.expect('\r')
		if err == nil {
			err = c.dec.expect('\n')
		}
	}
	if !c.countPreAuth() {
		c.done = true
		return "", &response{"BYE", "", "Too much data before authentication"}
	}
	var se *syntaxError
	switch {
	case errors.As(err, &se):
		if rerr := c.dec.resync(err); !errors.As(rerr, &se) {
			c.done = true
			return "", &response{"BYE", "", "Connection error"}
		}
		return "", no("", "Invalid SASL response: "+se.msg)
	case err != nil:
		c.done = true
		return "", &response{"BYE", "", "Connection error"}
	}
	if a.kind != argString {
		return "", no("", "Invalid SASL response: expected a string")
	}
	return a.s, nil
}

func decodeSASL(s string) ([]byte, error) {
	if s == "" || s == "=" {
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, no("", "Invalid base64 in the SASL response")
	}
	return b, nil
}

// throttled refuses an attempt from an address the shared throttle holds
// back after its failures, without a look at the password, so that a
// right one is answered as a wrong one; it counts as a failed attempt.
func (c *conn) throttled(username string) error {
	wait, ok := c.srv.opts.Throttle.Allow(c.cc.Client(), username)
	if ok {
		return nil
	}
	c.log.Warn("authentication refused: too many failures from this address", "event", "auth_throttled", "user", truncate(username, 200), "wait", wait.Round(time.Millisecond))
	c.attemptFailed()
	return errThrottled
}

// login checks a password; the password is never logged.
func (c *conn) login(username, password string) error {
	if err := c.throttled(username); err != nil {
		return err
	}
	home, err := c.srv.opts.Auth.Authenticate(c.ctx, username, password)
	if errors.Is(err, account.ErrAuthFailed) {
		return c.authFailed(username, err)
	}
	if err != nil {
		return err
	}
	c.user, c.home = username, home
	c.log = c.log.With("user", username)
	c.log.Info("authenticated", "event", "auth")
	return nil
}

func (c *conn) authFailed(username string, err error) error {
	wait := c.srv.opts.Throttle.Fail(c.cc.Client(), username)
	c.log.Warn("authentication failed", "event", "auth_failed", "user", truncate(username, 200), "wait", wait, "err", err)
	c.attemptFailed()
	return errAuthFailed
}

// attemptFailed counts a failed or refused login on the connection and
// ends it after the last one allowed (as Dovecot does).
func (c *conn) attemptFailed() {
	c.authFails++
	if c.authFails >= authdelay.MaxPerConn {
		c.cc.CloseAfterWrite()
	}
}

// cmdUnauthenticate returns to the state before AUTHENTICATE (RFC 5804
// §2.14.1).
func (c *conn) cmdUnauthenticate(_ []arg) error {
	c.log.Info("unauthenticated", "event", "unauth")
	c.user, c.home = "", ""
	c.log = c.connLog
	c.enc.response("OK", "", "Unauthenticate completed")
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
