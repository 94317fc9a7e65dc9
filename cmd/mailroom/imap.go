package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math"
	"net"
	"sync"

	"mailroom/imap"
	"mailroom/internal/address"
	"mailroom/internal/listen"
	"mailroom/mailbox/maildir"
)

// imapService is the IMAP server with the folder index it reads: the
// index stops listening to deliveries only once the server has stopped.
type imapService struct {
	srv  *imap.Server
	ix   io.Closer // the store's index
	once sync.Once
}

func (s *imapService) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.once.Do(func() { s.ix.Close() })
	return err
}

func (s *imapService) Close() error {
	err := s.srv.Close()
	s.once.Do(func() { s.ix.Close() })
	return err
}

// addIMAP starts the IMAP server on [imap] listen (STARTTLS where a
// certificate is configured) and listen_tls (implicit TLS), if any are
// configured, registering its listeners through add.
func (a *app) addIMAP(tlsConfig *tls.Config, add func(addr, proto string, uo listen.UnixOptions, serve func(net.Listener) error) error) (mailServer, error) {
	cfg := a.cfg
	if len(cfg.IMAP.Listen)+len(cfg.IMAP.ListenTLS) == 0 {
		return nil, nil
	}
	store, ix, err := a.imapStore(maildir.IndexOptions{Logger: a.log.With("proto", "imap")})
	if err != nil {
		return nil, err
	}
	limit := uint32(math.MaxUint32)
	if n := cfg.Limits.MaxMessageBytes; n > 0 && n < math.MaxUint32 {
		limit = uint32(n)
	}
	srv := imap.New(imap.Options{
		Store: store,
		Auth: imap.AuthenticatorFunc(func(ctx context.Context, user, pass string) (string, error) {
			acct, err := a.accounts.Authenticate(user, pass)
			if err != nil {
				return "", err
			}
			return acct.Home(), nil
		}),
		FindHome: func(ctx context.Context, user string) (string, bool) {
			addr, err := address.Parse(user)
			if err != nil {
				return "", false
			}
			acct, err := a.accounts.Lookup(ctx, addr)
			if err != nil {
				return "", false
			}
			return acct.Home(), true
		},
		TLSConfig:         tlsConfig,
		AllowInsecureAuth: cfg.IMAP.AllowInsecureAuth,
		AppendLimit:       limit,
		// IMAP clients keep connections open (IDLE, one per folder):
		// the SMTP limit on all connections does not fit, so IMAP has
		// its own; the one per address is the same.
		MaxConns:      cfg.IMAP.MaxConnections,
		MaxConnsPerIP: cfg.Limits.MaxConnectionsPerIP,
		Throttle:      a.throttle,
		Logger:        a.log,
		Panics:        a.panics,
	})
	svc := &imapService{srv: srv, ix: ix}
	serveWith := func(fn func(net.Listener) error) func(net.Listener) error {
		return func(l net.Listener) error {
			if err := fn(l); !errors.Is(err, imap.ErrServerClosed) {
				return err
			}
			return nil
		}
	}
	serve := serveWith(srv.Serve)
	for _, addr := range cfg.IMAP.Listen {
		if err := add(addr, "imap", listen.UnixOptions{}, serve); err != nil {
			svc.Close()
			return nil, err
		}
	}
	for _, addr := range cfg.IMAP.ListenTLS {
		// ServeTLS: TLS over the coalescing writer, as for STARTTLS.
		if err := add(addr, "imaps", listen.UnixOptions{}, serveWith(srv.ServeTLS)); err != nil {
			svc.Close()
			return nil, err
		}
	}
	return svc, nil
}
