package main

import (
	"fmt"

	"mailroom/config"
	"mailroom/mda"
	"mailroom/sieve"
	"mailroom/sieve/sievestore"
)

// openSieve opens the users' Sieve scripts as [sieve] says.
func openSieve(cfg *config.Config) (*sievestore.Store, error) {
	s, err := sievestore.New(sievestore.Options{
		MailRoot:      cfg.MailRoot(),
		MaxScripts:    cfg.Sieve.MaxScripts,
		MaxScriptSize: cfg.Sieve.MaxScriptSize,
		Limits:        sieve.Limits{MaxActions: cfg.Sieve.MaxActions, MaxRedirects: cfg.Sieve.MaxRedirects},
		GlobalDir:     cfg.Sieve.GlobalDir,
		Separator:     cfg.RecipientDelimiter(),
		Before:        cfg.Sieve.Before,
		After:         cfg.Sieve.After,
	})
	if err != nil {
		return nil, fmt.Errorf("sieve: %w", err)
	}
	return s, nil
}

// initSieve gives mda the scripts, the memory of vacation replies and
// duplicates in mailroom.db, and the DKIM signer for vacation replies.
// An administrator's script that does not compile is logged here (and
// by every delivery, which skips it); `mailroom check` refuses it.
func (a *app) initSieve() (mda.SieveOptions, error) {
	var err error
	a.scripts, err = openSieve(a.cfg)
	if err != nil {
		return mda.SieveOptions{}, err
	}
	if err := a.scripts.CheckAdmin(); err != nil {
		a.log.Warn("sieve: an administrator's script does not compile; deliveries skip it", "err", err)
	}
	mem, err := sievestore.NewMemory(a.db)
	if err != nil {
		return mda.SieveOptions{}, err
	}
	o := mda.SieveOptions{Scripts: a.scripts, Memory: mem}
	if a.signer != nil {
		o.Signer = a.signer
	}
	return o, nil
}

// checkSieve compiles the administrator's scripts for `mailroom check`.
func checkSieve(cfg *config.Config) error {
	if len(cfg.Sieve.Before)+len(cfg.Sieve.After) == 0 {
		return nil
	}
	s, err := openSieve(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.CheckAdmin()
}
