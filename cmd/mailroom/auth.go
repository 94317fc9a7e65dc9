package main

import (
	"fmt"
	"path/filepath"

	"mailroom/config"
	"mailroom/internal/resolve"
	"mailroom/mailauth"
	"mailroom/mailauth/dkim"
	"mailroom/milter"
	"mailroom/queue"
	"mailroom/smtp"
)

// initAuth builds what every command that talks to DNS or signs needs:
// the one resolver and, with [[dkim]] keys, the signer.
func (a *app) initAuth() error {
	a.resolver = resolve.New(resolve.Options{Server: a.cfg.DNSServer()})
	if len(a.cfg.DKIM) == 0 {
		return nil
	}
	var keys []dkim.Key
	for i, k := range a.cfg.DKIM {
		signer, err := dkim.LoadKey(k.Key)
		if err != nil {
			return fmt.Errorf("%s: dkim[%d].key: %w", a.cfg.Path, i, err)
		}
		keys = append(keys, dkim.Key{Domain: k.Domain, Selector: k.Selector, Signer: signer})
	}
	s, err := dkim.NewSigner(keys)
	if err != nil {
		return fmt.Errorf("%s: %w", a.cfg.Path, err)
	}
	a.signer = s
	return nil
}

var _ queue.Signer = (*dkim.Signer)(nil)

// queueSigner signs the queue's own DSNs (nil without keys: a nil
// *dkim.Signer in the interface would not be nil).
func (a *app) queueSigner() queue.Signer {
	if a.signer == nil {
		return nil
	}
	return a.signer
}

// mailAuth is the SMTP server's signing, checks and milters for role.
// Validate has accepted the settings, so they parse; an error is still
// returned rather than a server that skips its milters or checks.
func (a *app) mailAuth(role smtp.Role) (smtp.MailAuth, error) {
	ma := smtp.MailAuth{SpoolDir: filepath.Join(a.cfg.DataDir, "spool")}
	if role == smtp.Submission && a.signer != nil {
		ma.Signer = a.signer
	}
	key, l := "smtp", a.cfg.SMTP
	if role == smtp.Submission {
		key, l = "submission", a.cfg.Submission
	}
	ms, err := config.MilterSettings(key, l)
	if err != nil {
		return ma, err
	}
	if len(ms.Addrs) > 0 {
		if ma.Milters, err = milter.New(milter.Options{Milters: ms.Addrs, DefaultAction: ms.DefaultAction,
			Timeout: ms.Timeout, Hostname: a.cfg.Hostname, Daemon: role.String(), Logger: a.log.With("proto", key)}); err != nil {
			return ma, fmt.Errorf("%s milters: %w", key, err)
		}
		ma.Resolver = a.resolver
	}
	cs, err := a.cfg.ChecksSettings()
	if err != nil {
		return ma, err
	}
	// Forged Authentication-Results naming this host go from
	// submitted mail too (smtp.MailAuth.AuthServID).
	ma.AuthServID = cs.AuthServID
	if role == smtp.MX {
		// Forged Authentication-Results naming this host go whether
		// or not the checks run (RFC 8601 §5), except from the
		// trusted networks.
		ma.Trusted = cs.Trusted
		if cs.Enabled {
			ma.Checker = mailauth.New(mailauth.Options{Resolver: a.resolver, AuthServID: cs.AuthServID,
				Policy: cs.Policy, Timeout: cs.Timeout})
		}
	}
	return ma, nil
}
