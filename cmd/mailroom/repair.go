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

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"mailroom/config"
	"mailroom/imap"
	"mailroom/internal/ctl"
	"mailroom/internal/dbcheck"
	"mailroom/internal/durable"
	"mailroom/mailbox/maildir"
	"mailroom/queue"
)

// repair is `mailroom check -repair [-from BACKUP]`. It brings a damaged
// or lost mailroom.db back as far as the files allow:
//
//   - a damaged file is salvaged key by key into a new one (what bbolt
//     can still read) and kept aside, never deleted;
//   - queued messages whose records were lost are moved out of the queue
//     directory (the queue would delete them as crash leftovers);
//   - account records that do not decode are dropped, accounts missing
//     are taken from the backup's database (-from), and every mail home
//     still without one gets an account without a password, so that its
//     mail goes on being delivered;
//   - every folder of every account is indexed from the mail on disk:
//     UIDs are kept where the salvaged index (or a Maildir's
//     dovecot-uidlist) has them; a folder whose index was lost gets a new
//     UIDVALIDITY, so that clients fetch it again rather than trust UIDs
//     that may now name other messages.
//
// It says what it could not save. It needs the database to itself.
func repair(ctx context.Context, cfg *config.Config, from string, stdout io.Writer) error {
	if err := serverStopped(ctx, cfg, "stop it first, repair needs "+cfg.DBPath()+" to itself"); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return withExit(exitTempFail, fmt.Errorf("create data_dir: %w", err))
	}
	path := cfg.DBPath()
	stamp := time.Now().Format("20060102-150405")
	if err := salvageDB(ctx, path, stamp, stdout); err != nil {
		return err
	}

	// Queued messages that lost their records: out of the queue's way.
	if err := rescueQueue(cfg, stamp, stdout); err != nil {
		return err
	}

	a, err := openChecked(cfg, slog.New(slog.DiscardHandler), time.Second)
	if err != nil {
		return err
	}
	defer a.Close()
	return guarded(path, func() error {
		if err := repairAccounts(a, from, stdout); err != nil {
			return err
		}
		return reindex(ctx, a, stdout)
	})
}

// serverStopped returns an error (exit 75) saying what to do if serve
// answers on the control socket.
func serverStopped(ctx context.Context, cfg *config.Config, what string) error {
	if err := ctl.Call(ctx, cfg.ControlSocket(), "ping", nil, nil, nil); !errors.Is(err, ctl.ErrNoServer) {
		return withExit(exitTempFail, fmt.Errorf("mailroom serve is running (%s answers): %s", cfg.ControlSocket(), what))
	}
	return nil
}

// salvageDB replaces a damaged database by what can be read of it,
// keeping the old file as <path>.damaged-<stamp>. A sound or missing file
// is left as it is. A repair interrupted between its two renames is
// finished first.
func salvageDB(ctx context.Context, path, stamp string, stdout io.Writer) error {
	fresh := path + ".salvage"
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(fresh); err == nil {
			if err := os.Rename(fresh, path); err != nil {
				return withExit(exitTempFail, fmt.Errorf("finish the last repair: %w", err))
			}
			fmt.Fprintf(stdout, "%s: put in place what the last repair salvaged (it was interrupted)\n", path)
		}
	}
	os.Remove(fresh)
	info, err := dbcheck.Check(ctx, path, dbcheck.Options{})
	var de *dbcheck.DamageError
	switch {
	case err == nil && info.Size == 0:
		fmt.Fprintf(stdout, "%s: empty; making a new one\n", path)
		return nil
	case err == nil:
		fmt.Fprintf(stdout, "%s: sound (bbolt's consistency check passed)\n", path)
		return nil
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(stdout, "%s: missing; making a new one\n", path)
		return nil
	case errors.Is(err, dbcheck.ErrLocked):
		return withExit(exitTempFail, fmt.Errorf("%s: %w: stop the process that has it open first", path, errDBLocked))
	case !errors.As(err, &de):
		return withExit(exitTempFail, err)
	}
	fmt.Fprintf(stdout, "%s: damaged (%s)\n", path, de.Reason)
	rep, err := dbcheck.Salvage(ctx, path, fresh, dbcheck.Options{})
	if err != nil {
		return withExit(exitTempFail, fmt.Errorf("salvage %s: %w", path, err))
	}
	aside := path + ".damaged-" + stamp
	// The salvage is complete on disk before the damaged file moves: a
	// crash between the renames is finished by the next repair.
	if err := durable.SyncDir(filepath.Dir(path)); err != nil {
		return withExit(exitTempFail, err)
	}
	if err := os.Rename(path, aside); err != nil {
		return withExit(exitTempFail, fmt.Errorf("keep the damaged file aside: %w", err))
	}
	if err := os.Rename(fresh, path); err != nil {
		return withExit(exitTempFail, fmt.Errorf("put the salvaged file in place: %w", err))
	}
	if err := durable.SyncDir(filepath.Dir(path)); err != nil {
		return withExit(exitTempFail, err)
	}
	fmt.Fprintf(stdout, "kept the damaged file as %s\n", aside)
	if !rep.Opened {
		fmt.Fprintf(stdout, "salvaged nothing: %s\n", rep.Reason)
		return nil
	}
	fmt.Fprintf(stdout, "salvaged %d keys in %d buckets (%d reading passes)\n", rep.Keys, len(rep.Buckets), rep.Runs)
	var partial [][]string
	for _, b := range rep.Buckets {
		for _, g := range b.Gaps {
			where := "the top level"
			if len(b.Path) > 0 {
				where = "bucket " + strings.Join(b.Path, "/")
			}
			fmt.Fprintf(stdout, "could not read %s %s\n", where, describeGap(g))
		}
		if len(b.Path) > 1 && !b.Complete {
			partial = append(partial, b.Path)
		}
	}
	return dropPartial(path, partial, stdout)
}

// dropPartial deletes the buckets below the top level that were not read
// whole. Top-level buckets hold records that stand alone (an account, a
// queued message), so what was read of them is kept; deeper ones are
// structures (a folder's index) whose owners expect them whole, and
// rebuild them from the files when they are missing.
func dropPartial(path string, partial [][]string, stdout io.Writer) error {
	if len(partial) == 0 {
		return nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return withExit(exitTempFail, fmt.Errorf("open %s: %w", path, err))
	}
	var dropped []string
	err = db.Update(func(tx *bolt.Tx) error {
		for _, p := range partial {
			b := tx.Bucket([]byte(p[0]))
			for _, name := range p[1 : len(p)-1] {
				if b == nil {
					break
				}
				b = b.Bucket([]byte(name))
			}
			if b == nil {
				continue // inside one dropped already
			}
			if err := b.DeleteBucket([]byte(p[len(p)-1])); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
				return err
			}
			dropped = append(dropped, strings.Join(p, "/"))
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return withExit(exitTempFail, fmt.Errorf("drop partly read buckets: %w", err))
	}
	for _, d := range dropped {
		fmt.Fprintf(stdout, "dropped the partly read bucket %s (its owner rebuilds it)\n", d)
	}
	return nil
}

func describeGap(g dbcheck.Gap) string {
	switch {
	case g.After == "" && g.Before == "":
		return "at all"
	case g.After == "":
		return fmt.Sprintf("before %q", g.Before)
	case g.Before == "":
		return fmt.Sprintf("after %q", g.After)
	}
	return fmt.Sprintf("between %q and %q", g.After, g.Before)
}

// rescueQueue moves queue bodies that no record names to
// <data_dir>/queue-lost-<stamp>/: their envelopes (sender, recipients)
// are gone, and the queue would delete them.
func rescueQueue(cfg *config.Config, stamp string, stdout io.Writer) error {
	dir := filepath.Join(cfg.DataDir, "queue")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	db, err := bolt.Open(cfg.DBPath(), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return withExit(exitTempFail, fmt.Errorf("open %s: %w", cfg.DBPath(), err))
	}
	var orphans []string
	err = guarded(cfg.DBPath(), func() (err error) {
		orphans, err = queue.Orphans(db, dir)
		return err
	})
	db.Close()
	if err != nil || len(orphans) == 0 {
		return err
	}
	lost := filepath.Join(cfg.DataDir, "queue-lost-"+stamp)
	if err := os.MkdirAll(lost, 0o700); err != nil {
		return withExit(exitTempFail, err)
	}
	for _, f := range orphans {
		if err := os.Rename(f, filepath.Join(lost, filepath.Base(f))); err != nil {
			return withExit(exitTempFail, fmt.Errorf("move a queued message aside: %w", err))
		}
	}
	if err := durable.SyncDir(lost); err != nil {
		return withExit(exitTempFail, err)
	}
	fmt.Fprintf(stdout, "queue: %d queued message(s) lost their envelopes (sender and recipients); their text is kept in %s: send them again by hand if they matter\n", len(orphans), lost)
	return nil
}

// repairAccounts drops undecodable records, imports missing accounts from
// the backup and makes one without a password for each mail home left
// without one.
func repairAccounts(a *app, from string, stdout io.Writer) error {
	bad, err := a.accounts.Scrub()
	if err != nil {
		return withExit(exitTempFail, err)
	}
	for _, k := range bad {
		fmt.Fprintf(stdout, "accounts: dropped the unreadable record %q\n", k)
	}
	if from != "" {
		added, err := importAccounts(a, from)
		if err != nil {
			return err
		}
		for _, addr := range added {
			fmt.Fprintf(stdout, "accounts: %s restored from %s\n", addr, from)
		}
	}
	homes, err := mailHomes(a.cfg)
	if err != nil {
		return withExit(exitTempFail, err)
	}
	accts, err := a.accounts.List()
	if err != nil {
		return withExit(exitTempFail, err)
	}
	have := map[string]bool{}
	for _, acct := range accts {
		have[acct.Home()] = true
	}
	var made []string
	for _, h := range homes {
		if have[h] {
			continue
		}
		domain, local, _ := strings.Cut(h, "/")
		addr := local + "@" + domain
		if _, err := a.accounts.AddWithoutPassword(addr); err != nil {
			fmt.Fprintf(stdout, "accounts: mail home %s has no account, and none can be made (%v)\n", h, err)
			continue
		}
		made = append(made, addr)
	}
	for _, addr := range made {
		fmt.Fprintf(stdout, "accounts: %s made again for its mail home, without a password: set one with \"mailroom user passwd %s\"\n", addr, addr)
	}
	accts, err = a.accounts.List()
	if err != nil {
		return withExit(exitTempFail, err)
	}
	fmt.Fprintf(stdout, "accounts: %d\n", len(accts))
	return nil
}

// importAccounts reads the accounts of the database in dir (a backup made
// by `mailroom backup`, or a directory holding a copy of mailroom.db).
func importAccounts(a *app, dir string) ([]string, error) {
	src := dir
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		src = filepath.Join(dir, "mailroom.db")
	}
	if _, err := dbcheck.Check(context.Background(), src, dbcheck.Options{}); err != nil {
		return nil, withExit(exitDataErr, fmt.Errorf("-from: %w", err))
	}
	db, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, withExit(exitDataErr, fmt.Errorf("-from: open %s: %w", src, err))
	}
	defer db.Close()
	added, err := a.accounts.Import(db)
	return added, withExit(exitTempFail, err)
}

// reindex brings the index of every folder of every account up to date
// with the mail on disk and says what each holds.
func reindex(ctx context.Context, a *app, stdout io.Writer) error {
	ix, closer, err := a.imapStore(maildir.IndexOptions{Logger: slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return withExit(exitTempFail, err)
	}
	defer closer.Close()
	accts, err := a.accounts.List()
	if err != nil {
		return withExit(exitTempFail, err)
	}
	total := 0
	for _, acct := range accts {
		if _, err := os.Stat(filepath.Join(a.cfg.MailRoot(), acct.Home())); errors.Is(err, fs.ErrNotExist) {
			continue // no mail yet
		}
		n, folders, err := indexHome(ctx, ix, acct.Home())
		if err != nil {
			return withExit(exitTempFail, fmt.Errorf("index %s: %w", acct.Home(), err))
		}
		total += n
		fmt.Fprintf(stdout, "index: %s: %d messages in %d folders\n", acct.Home(), n, folders)
	}
	fmt.Fprintf(stdout, "repair done: %d messages indexed\n", total)
	return nil
}

func indexHome(ctx context.Context, ix imap.Store, home string) (messages, folders int, err error) {
	sess, err := ix.Open(ctx, home)
	if err != nil {
		return 0, 0, err
	}
	defer sess.Close()
	list, err := sess.List(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, f := range list {
		snap, err := sess.Sync(ctx, f.Name)
		if err != nil {
			return 0, 0, fmt.Errorf("folder %s: %w", f.Name, err)
		}
		messages += len(snap.Messages)
	}
	return messages, len(list), nil
}
