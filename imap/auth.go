package imap

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"
)

// Capabilities, STARTTLS, LOGIN and AUTHENTICATE: the not-authenticated
// state.

// loggedInCaps are the capabilities after login, beyond those before it
// (APPENDLIMIT with its value is added).
var loggedInCaps = []goimap.Cap{
	goimap.CapUnselect, goimap.CapIdle, goimap.CapNamespace, goimap.CapUIDPlus,
	goimap.CapESearch, goimap.CapSearchRes, goimap.CapListExtended, goimap.CapListStatus,
	goimap.CapMove, goimap.CapStatusSize, goimap.CapBinary, goimap.CapChildren,
	goimap.CapSpecialUse, goimap.CapUTF8Accept,
}

// caps lists the capabilities for the connection's state (RFC 9051
// §7.2.2): STARTTLS and AUTH= or LOGINDISABLED before login.
func (c *conn) caps() []string {
	out := []string{"IMAP4rev1", "IMAP4rev2", "SASL-IR", "LITERAL+", "ENABLE", "ID"}
	if c.state == stateNotAuth {
		if c.srv.opts.TLSConfig != nil && !c.tls {
			out = append(out, "STARTTLS")
		}
		if c.canAuth() {
			out = append(out, "AUTH=PLAIN")
		} else {
			out = append(out, "LOGINDISABLED")
		}
		return out
	}
	for _, cp := range loggedInCaps {
		out = append(out, string(cp))
	}
	return append(out, fmt.Sprintf("APPENDLIMIT=%d", c.srv.opts.AppendLimit))
}

// capCode is the CAPABILITY response code for the greeting and the OK of
// a login.
func (c *conn) capCode() string {
	return "CAPABILITY " + strings.Join(c.caps(), " ")
}

func (c *conn) capability(tag string, _ bool) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	c.enc.Atom("* CAPABILITY ").Atom(strings.Join(c.caps(), " ")).CRLF()
	return c.done(tag)
}

// canAuth says whether a password may be sent: over TLS, from loopback,
// or with AllowInsecureAuth (DESIGN.md).
func (c *conn) canAuth() bool {
	return c.tls || c.srv.opts.AllowInsecureAuth || c.ss.cc.Loopback()
}

var errPrivacy = &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodePrivacyRequired, Text: "TLS is required to log in"}

func (c *conn) startTLS(tag string, _ bool) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if c.srv.opts.TLSConfig == nil {
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Text: "STARTTLS is not available"}
	}
	if c.tls {
		return &goimap.Error{Type: goimap.StatusResponseTypeBad, Text: "TLS is already on"}
	}
	c.enc.Status(tag, goimap.StatusResponseTypeOK, "", "Begin TLS negotiation now")
	if err := c.enc.Flush(); err != nil {
		return errConnGone
	}
	// Whatever the client sent after STARTTLS in clear is dropped: it
	// must not count as sent under TLS (the STARTTLS command injection
	// of CVE-2011-0411).
	tc := tls.Server(c.nc, c.srv.opts.TLSConfig)
	tc.SetDeadline(time.Now().Add(loginTimeout))
	if err := tc.Handshake(); err != nil {
		c.ss.log.Debug("TLS handshake failed", "err", err)
		return errConnGone
	}
	tc.SetDeadline(time.Time{})
	c.nc, c.tls = tc, true
	c.br = bufio.NewReaderSize(tc, 4096)
	c.dec.Reset(c.br)
	c.enc.Reset(&c.out)
	return nil
}

func (c *conn) login(tag string, _ bool) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	user, err := c.dec.AString()
	if err != nil {
		return err
	}
	if err := c.dec.SP(); err != nil {
		return err
	}
	pass, err := c.dec.AString()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if !c.canAuth() {
		return errPrivacy
	}
	if err := c.ss.Login(user, pass); err != nil {
		return err
	}
	c.state = stateAuth
	c.enc.Status(tag, goimap.StatusResponseTypeOK, c.capCode(), "Logged in")
	return c.enc.Err()
}

// authenticate runs AUTHENTICATE PLAIN (RFC 4616), with an initial
// response (SASL-IR, RFC 4959) or after a "+".
func (c *conn) authenticate(tag string, _ bool) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	mech, err := c.dec.Atom()
	if err != nil {
		return err
	}
	var initial []byte
	hasInitial := false
	if end, err := c.dec.AtEnd(); err != nil {
		return err
	} else if !end {
		if err := c.dec.SP(); err != nil {
			return err
		}
		s, err := c.dec.Atom()
		if err != nil {
			return err
		}
		if initial, err = decodeSASL(s); err != nil {
			return err
		}
		hasInitial = true
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if !strings.EqualFold(mech, "PLAIN") {
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Text: "Only AUTHENTICATE PLAIN is supported"}
	}
	if !c.canAuth() {
		return errPrivacy
	}
	var loginErr error
	server := sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			loginErr = &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeAuthorizationFailed, Text: "Acting as another user is not supported"}
			return loginErr
		}
		loginErr = c.ss.Login(username, password)
		return loginErr
	})
	resp := initial
	if !hasInitial {
		resp = nil
	}
	for {
		challenge, done, err := server.Next(resp)
		if loginErr != nil {
			return loginErr
		}
		if err != nil {
			return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeAuthenticationFailed, Text: "Authentication failed"}
		}
		if done {
			break
		}
		c.enc.Atom("+ ").Atom(base64.StdEncoding.EncodeToString(challenge)).CRLF()
		if err := c.enc.Flush(); err != nil {
			return errConnGone
		}
		line, err := c.dec.ReadLine(8 << 10)
		if err != nil {
			return errConnGone
		}
		if line == "*" {
			return &goimap.Error{Type: goimap.StatusResponseTypeBad, Text: "AUTHENTICATE cancelled"}
		}
		if resp, err = decodeSASL(line); err != nil {
			return err
		}
	}
	c.state = stateAuth
	c.enc.Status(tag, goimap.StatusResponseTypeOK, c.capCode(), "Logged in")
	return c.enc.Err()
}

func decodeSASL(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, &goimap.Error{Type: goimap.StatusResponseTypeBad, Text: "Invalid base64 in the SASL response"}
	}
	return b, nil
}
