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
	"time"

	"mailroom/mailbox"
	"mailroom/mailbox/maildir"
	"mailroom/mailbox/mbox"
)

// cmdConvert is `mailroom convert -to mbox|maildir [ADDRESS...]`: each
// account's mail copied into the other format, offline, every folder's
// message count and bytes checked, then the old store moved aside
// (Maildir.converted, or mbox.converted and mail.converted), never
// deleted.
func cmdConvert(args []string, stdout, stderr io.Writer) error {
	flags, cf := newFlagSet("convert", stderr)
	to := flags.String("to", "", `the format to convert to: "mbox" or "maildir"`)
	pos, err := parseInterspersed(flags, args)
	if err != nil {
		return err
	}
	if *to != "mbox" && *to != "maildir" {
		return withExit(exitUsage, errors.New(`name the format to convert to: -to mbox or -to maildir`))
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := serverStopped(ctx, cfg, "stop it, and deliveries, before converting the mail"); err != nil {
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
		md := a.maildir
		if md == nil {
			if md, err = maildir.Open(maildir.Options{Root: cfg.MailRoot(), Hostname: cfg.Hostname}); err != nil {
				return withExit(exitTempFail, err)
			}
			defer md.Close()
		}
		ix, err := maildir.NewIndex(a.db, md, maildir.IndexOptions{Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if err != nil {
			return withExit(exitTempFail, err)
		}
		defer ix.Close()
		order, _ := mbox.ParseLockOrder(cfg.Delivery.MboxLockOrder)
		mb, err := mbox.OpenStore(mbox.StoreOptions{Root: cfg.MailRoot(), Inbox: cfg.Delivery.MboxInbox, Lock: mbox.Options{Order: order}, DB: a.db, Converting: true})
		if err != nil {
			return withExit(exitTempFail, err)
		}
		defer mb.Close()
		for _, acct := range accts {
			home := acct.Home()
			dir := filepath.Join(cfg.MailRoot(), filepath.FromSlash(home))
			var src, dst interface {
				Open(context.Context, string) (mailbox.Folders, error)
			}
			var have, clash []string
			if *to == "mbox" {
				src, dst, have, clash = ix, mb, []string{"Maildir"}, []string{"mbox", "mail", "Maildir.converted"}
			} else {
				src, dst, have, clash = mb, ix, []string{"mbox"}, []string{"Maildir", "mbox.converted", "mail.converted"}
			}
			if _, err := os.Stat(filepath.Join(dir, have[0])); errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(stdout, "%s: no %s to convert\n", acct.Address, have[0])
				continue
			}
			for _, c := range clash {
				if _, err := os.Stat(filepath.Join(dir, c)); err == nil {
					return withExit(exitTempFail, fmt.Errorf("%s: %s already holds %s: move it away first (nothing was converted)", acct.Address, home, c))
				}
			}
			folders, messages, bytes, err := convertHome(ctx, src, dst, home)
			if err != nil {
				return withExit(exitTempFail, fmt.Errorf("convert %s: %w (the old store is untouched; remove what was made in %v before trying again)", acct.Address, err, clash[:len(clash)-1]))
			}
			old := []string{"Maildir"}
			if *to == "maildir" {
				old = []string{"mbox", "mail"}
			}
			for _, o := range old {
				if err := os.Rename(filepath.Join(dir, o), filepath.Join(dir, o+".converted")); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return withExit(exitTempFail, fmt.Errorf("%s: move the old %s aside: %w", acct.Address, o, err))
				}
			}
			fmt.Fprintf(stdout, "%s: %d folders, %d messages, %d bytes copied to %s and checked; the old store is in %s.converted\n", acct.Address, folders, messages, bytes, *to, old[0])
		}
		return nil
	})
}

// convertHome copies every folder of home from src to dst, with flags,
// keywords, internal dates and subscriptions, and checks each folder's
// message count and bytes (as served) on the destination.
func convertHome(ctx context.Context, src, dst interface {
	Open(context.Context, string) (mailbox.Folders, error)
}, home string) (folders, messages int, bytes int64, err error) {
	from, err := src.Open(ctx, home)
	if err != nil {
		return 0, 0, 0, err
	}
	defer from.Close()
	to, err := dst.Open(ctx, home)
	if err != nil {
		return 0, 0, 0, err
	}
	defer to.Close()
	list, err := from.List(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, f := range list {
		if f.NoSelect {
			continue
		}
		if f.Name != "INBOX" {
			if err := to.Create(ctx, f.Name); err != nil && !errors.Is(err, mailbox.ErrFolderExists) {
				return folders, messages, bytes, fmt.Errorf("folder %s: %w", f.Name, err)
			}
		}
		if f.Subscribed {
			to.SetSubscribed(ctx, f.Name, true)
		}
		snap, err := from.Sync(ctx, f.Name)
		if err != nil {
			return folders, messages, bytes, fmt.Errorf("folder %s: %w", f.Name, err)
		}
		var size int64
		for _, m := range snap.Messages {
			r, n, err := from.Open(ctx, f.Name, m.UID)
			if err != nil {
				return folders, messages, bytes, fmt.Errorf("folder %s, UID %d: %w", f.Name, m.UID, err)
			}
			date := m.InternalDate
			if date.IsZero() {
				if ld, ok := from.(mailbox.LazyDates); ok {
					if d, err := ld.InternalDates(ctx, f.Name, []uint32{m.UID}); err == nil {
						date = d[m.UID]
					}
				}
			}
			_, _, err = to.Append(ctx, f.Name, r, m.Flags, date)
			r.Close()
			if err != nil {
				return folders, messages, bytes, fmt.Errorf("folder %s, UID %d: %w", f.Name, m.UID, err)
			}
			size += n
		}
		got, err := to.Sync(ctx, f.Name)
		if err != nil {
			return folders, messages, bytes, err
		}
		var gotSize int64
		for _, m := range got.Messages {
			gotSize += m.Size
		}
		if len(got.Messages) != len(snap.Messages) || gotSize != size {
			return folders, messages, bytes, fmt.Errorf("folder %s: %d messages of %d bytes copied, the copy holds %d of %d bytes", f.Name, len(snap.Messages), size, len(got.Messages), gotSize)
		}
		folders++
		messages += len(got.Messages)
		bytes += size
	}
	return folders, messages, bytes, nil
}
