package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"mailroom/imap"
	"mailroom/mailbox"
	"mailroom/mailbox/maildir"
	"mailroom/mailbox/mbox"
	"mailroom/mda"
)

// mailStore is the store of [delivery] format: what mda delivers into,
// in two steps, and what the IMAP server reads (through imapStore), so
// that neither knows the format.
type mailStore interface {
	mda.Store
	mda.SpecialStore
	mda.FolderStore
	Close() error
}

// openStore opens the store of the configured format.
func (a *app) openStore() error {
	switch a.cfg.Delivery.Format {
	case "mbox":
		order, err := mbox.ParseLockOrder(a.cfg.Delivery.MboxLockOrder)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(a.cfg.MailRoot(), 0o700); err != nil {
			return fmt.Errorf("create mail root: %w", err)
		}
		s, err := mbox.OpenStore(mbox.StoreOptions{
			Root:   a.cfg.MailRoot(),
			Inbox:  a.cfg.Delivery.MboxInbox,
			Lock:   mbox.Options{Order: order},
			DB:     a.db,
			Logger: a.log.With("store", "mbox"),
		})
		if err != nil {
			return err
		}
		a.store, a.mboxes = s, s
		return nil
	default:
		md, err := maildir.Open(maildir.Options{Root: a.cfg.MailRoot(), Hostname: a.cfg.Hostname})
		if err != nil {
			return err
		}
		a.maildir = md
		a.store = maildirGuard{md, a.cfg.MailRoot()}
		return nil
	}
}

// imapStore returns what the IMAP server reads, and what to close when
// it has stopped.
func (a *app) imapStore(opts maildir.IndexOptions) (imap.Store, io.Closer, error) {
	if a.mboxes != nil {
		return a.mboxes, io.NopCloser(nil), nil
	}
	ix, err := maildir.NewIndex(a.db, a.maildir, opts)
	if err != nil {
		return nil, nil, err
	}
	return maildirIMAPGuard{ix, a.cfg.MailRoot()}, ix, nil
}

// maildirGuard refuses, for format = "maildir", the mail homes that hold
// an mbox store and no Maildir, instead of starting a Maildir beside them.
type maildirGuard struct {
	*maildir.Store
	root string
}

// checkMaildirHome is the refusal: a home with <home>/mbox and no
// <home>/Maildir.
func checkMaildirHome(root, home string) error {
	dir := filepath.Join(root, filepath.FromSlash(home))
	if _, err := os.Lstat(filepath.Join(dir, "Maildir")); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if fi, err := os.Lstat(filepath.Join(dir, "mbox")); err == nil && fi.Mode().IsRegular() {
		return &mailbox.FormatError{Home: home, Found: "an mbox store (mbox)", Format: "maildir"}
	}
	return nil
}

func (g maildirGuard) Stage(ctx context.Context, home string, r io.Reader) (mailbox.Staged, error) {
	if err := checkMaildirHome(g.root, home); err != nil {
		return nil, err
	}
	return g.Store.Stage(ctx, home, r)
}

func (g maildirGuard) StageSpecial(ctx context.Context, home, use string, r io.Reader) (mailbox.Staged, error) {
	if err := checkMaildirHome(g.root, home); err != nil {
		return nil, err
	}
	return g.Store.StageSpecial(ctx, home, use, r)
}

func (g maildirGuard) StageFolder(ctx context.Context, home string, d mailbox.Delivery, r io.Reader) (mailbox.Staged, error) {
	if err := checkMaildirHome(g.root, home); err != nil {
		return nil, err
	}
	return g.Store.StageFolder(ctx, home, d, r)
}

// maildirIMAPGuard is maildirGuard for the IMAP server.
type maildirIMAPGuard struct {
	*maildir.Index
	root string
}

func (g maildirIMAPGuard) Open(ctx context.Context, home string) (mailbox.Folders, error) {
	if err := checkMaildirHome(g.root, home); err != nil {
		return nil, err
	}
	return g.Index.Open(ctx, home)
}
