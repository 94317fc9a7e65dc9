package main

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"mailroom/internal/listen"
	"mailroom/managesieve"
	"mailroom/sieve"
)

// addManageSieve starts the ManageSieve server on [managesieve] listen,
// if any, registering its listeners through add.
func (a *app) addManageSieve(tlsConfig *tls.Config, add func(addr, proto string, uo listen.UnixOptions, serve func(net.Listener) error) error) (mailServer, error) {
	cfg := a.cfg
	if len(cfg.ManageSieve.Listen) == 0 {
		return nil, nil
	}
	srv := managesieve.New(managesieve.Options{
		Scripts: a.scripts,
		Auth: managesieve.AuthenticatorFunc(func(ctx context.Context, user, pass string) (string, error) {
			acct, err := a.accounts.Authenticate(user, pass)
			if err != nil {
				return "", err
			}
			return acct.Home(), nil
		}),
		TLSConfig:         tlsConfig,
		AllowInsecureAuth: cfg.ManageSieve.AllowInsecureAuth,
		Extensions:        sieve.Extensions(),
		MaxRedirects:      cfg.Sieve.MaxRedirects,
		MaxScriptSize:     cfg.Sieve.MaxScriptSize,
		MaxConns:          cfg.ManageSieve.MaxConnections,
		MaxConnsPerIP:     cfg.Limits.MaxConnectionsPerIP,
		Throttle:          a.throttle,
		Logger:            a.log,
		Panics:            a.panics,
	})
	serve := func(l net.Listener) error {
		if err := srv.Serve(l); !errors.Is(err, managesieve.ErrServerClosed) {
			return err
		}
		return nil
	}
	for _, addr := range cfg.ManageSieve.Listen {
		if err := add(addr, "managesieve", listen.UnixOptions{}, serve); err != nil {
			srv.Close()
			return nil, err
		}
	}
	return srv, nil
}
