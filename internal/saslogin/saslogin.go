// Package saslogin is the server side of the LOGIN SASL mechanism
// (draft-murchison-sasl-login-00), which go-sasl provides only as a
// client: Thunderbird, Outlook and sieve-connect still offer it. SMTP AUTH
// and ManageSieve AUTHENTICATE use this one implementation.
package saslogin

import (
	"errors"

	"github.com/emersion/go-sasl"
)

// NewServer returns a LOGIN server that asks for the user name (unless
// the client sent it as its initial response) and the password, then
// calls check with them; check's error ends the exchange.
func NewServer(check func(username, password string) error) sasl.Server {
	return &server{check: check}
}

type server struct {
	check    func(username, password string) error
	username string
	step     int
}

// Next implements sasl.Server.
func (l *server) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step++
		if len(response) > 0 { // initial response: the user name
			l.username = string(response)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.username = string(response)
		l.step++
		return []byte("Password:"), false, nil
	case 2:
		l.step++
		return nil, true, l.check(l.username, string(response))
	}
	return nil, false, errors.New("unexpected response")
}
