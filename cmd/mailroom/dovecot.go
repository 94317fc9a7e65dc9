package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"mailroom/account"
	"mailroom/mailbox/maildir"
)

// cmdDovecot is `mailroom dovecot export [ADDRESS...]`: the way back to
// Dovecot with the UIDs kept (the way in needs no command: the index
// takes a dovecot-uidlist over by itself).
func cmdDovecot(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "export" {
		return withExit(exitUsage, errors.New("usage: mailroom dovecot export [ADDRESS...] [-config FILE]"))
	}
	flags, cf := newFlagSet("dovecot export", stderr)
	pos, err := parseInterspersed(flags, args[1:])
	if err != nil {
		return err
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	ctx := context.Background()
	// Nothing may change the Maildirs between the export and Dovecot.
	if err := serverStopped(ctx, cfg, "stop it, and deliveries, before handing the Maildirs to Dovecot"); err != nil {
		return err
	}
	a, err := openApp(cfg, slog.New(slog.DiscardHandler), time.Second)
	if err != nil {
		return err
	}
	defer a.Close()
	return guarded(cfg.DBPath(), func() error {
		accts, err := exportAccounts(a, pos)
		if err != nil {
			return err
		}
		if a.maildir == nil {
			return withExit(exitUsage, errors.New("dovecot export writes Maildir's dovecot-uidlist: with format = \"mbox\", Dovecot reads the UIDs from the X-IMAPbase and X-UID fields mailroom writes when it rewrites a file"))
		}
		ix, err := maildir.NewIndex(a.db, a.maildir, maildir.IndexOptions{Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if err != nil {
			return withExit(exitTempFail, err)
		}
		defer ix.Close()
		for _, acct := range accts {
			if _, err := os.Stat(filepath.Join(cfg.MailRoot(), acct.Home())); errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(stdout, "%s: no mail yet\n", acct.Address)
				continue
			}
			folders, messages, err := ix.ExportDovecot(ctx, acct.Home())
			if err != nil {
				return withExit(exitTempFail, fmt.Errorf("export %s: %w", acct.Address, err))
			}
			fmt.Fprintf(stdout, "%s: dovecot-uidlist written in %d folders, %d messages\n", acct.Address, folders, messages)
		}
		return nil
	})
}

// exportAccounts is every account, or those named.
func exportAccounts(a *app, names []string) ([]account.Account, error) {
	all, err := a.accounts.List()
	if err != nil {
		return nil, withExit(exitTempFail, err)
	}
	if len(names) == 0 {
		return all, nil
	}
	var out []account.Account
	for _, n := range names {
		found := false
		for _, acct := range all {
			if strings.EqualFold(acct.Address.String(), n) {
				out = append(out, acct)
				found = true
			}
		}
		if !found {
			return nil, withExit(exitNoUser, fmt.Errorf("no account %s", n))
		}
	}
	return out, nil
}
