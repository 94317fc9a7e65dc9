package main

import (
	"context"
	"errors"
	"strings"

	"mailroom/internal/address"
	"mailroom/internal/listen"
	"mailroom/mda"
	"mailroom/socketmap"
)

// addSocketmap creates the socketmap server if [socketmap] listen names
// any address.
func (svc *services) addSocketmap(a *app) error {
	cfg := a.cfg
	if len(cfg.Socketmap.Listen) == 0 {
		return nil
	}
	mode, err := cfg.SocketmapMode()
	if err != nil {
		return err
	}
	srv := socketmap.New(socketmap.Options{Tables: a.socketmapTables(),
		IdleTimeout: cfg.Limits.IdleTimeout.Duration, MaxConns: cfg.Limits.MaxConnections, Logger: a.log, Panics: a.panics})
	svc.servers = append(svc.servers, srv)
	for _, addr := range cfg.Socketmap.Listen {
		if err := svc.add(addr, "socketmap", listen.UnixOptions{Mode: mode, Group: cfg.Socketmap.SocketGroup}, srv.Serve); err != nil {
			return err
		}
	}
	return nil
}

// socketmapTables are the maps [socketmap] serves to Postfix:
//
//	domain   for virtual_mailbox_domains: the local domains;
//	mailbox  for virtual_mailbox_maps: the addresses mailroom delivers,
//	         decided as RCPT decides (accounts, aliases, .forward,
//	         recipient_delimiter, catch-alls), so Postfix rejects the
//	         rest with 550 5.1.1 and never accepts mail it must bounce.
//
// A failure to decide (the database cannot be read) is temporary: Postfix
// answers 451 and the sender retries.
func (a *app) socketmapTables() map[string]socketmap.Table {
	return map[string]socketmap.Table{
		"domain": socketmap.TableFunc(func(_ context.Context, key string) (string, error) {
			d, err := address.NormalizeDomain(key)
			if err != nil || !a.mda.IsLocalDomain(d) {
				return "", socketmap.ErrNotFound
			}
			return d, nil
		}),
		"mailbox": socketmap.TableFunc(func(ctx context.Context, key string) (string, error) {
			// Postfix asks for whole addresses only (socketmap_table(5):
			// no "@domain" or extension-less keys), which is what RCPT sees.
			if !strings.Contains(key, "@") || strings.HasPrefix(key, "@") {
				return "", socketmap.ErrNotFound
			}
			rc, err := a.mda.Resolve(ctx, key)
			if err != nil {
				if refusedForGood(err) {
					return "", socketmap.ErrNotFound
				}
				return "", err
			}
			// The value is unused with virtual_transport = lmtp or pipe
			// (virtual(8) alone reads it as a mailbox path).
			return rc.Address.String(), nil
		}),
	}
}

// refusedForGood reports whether Resolve's error means the address is not
// delivered here, as opposed to trouble deciding.
func refusedForGood(err error) bool {
	var pe *mda.PermanentError
	return errors.Is(err, mda.ErrNoSuchUser) || errors.Is(err, mda.ErrNotLocal) ||
		errors.Is(err, mda.ErrBadAddress) || errors.Is(err, mda.ErrLoop) || errors.As(err, &pe)
}
