package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"mailroom/account"
	"mailroom/config"
	"mailroom/internal/backup"
	"mailroom/internal/ctl"
	"mailroom/internal/dbcheck"
	"mailroom/internal/durable"
	"mailroom/mailbox/maildir"
	"mailroom/queue"
)

// A backup directory holds:
//
//	mailroom.db   a consistent copy of the database (bbolt's transactional copy)
//	mail/         the mail homes, as they were just after that copy
//	queue/        the bodies of the queued messages the copy records
//	dkim/         the DKIM keys kept in data_dir, if any
//	backup.json   when, from where, and what it holds
//	MANIFEST      every other file with its SHA-256 (sha256sum -c MANIFEST)
//
// While serve runs, the database copy is made inside it (it holds the
// lock) through the control socket; so is the rest, so that one process
// decides what is consistent. The directory is then written with serve's
// rights.

// backupInfo is backup.json.
type backupInfo struct {
	Created  time.Time `json:"created"`
	Hostname string    `json:"hostname"`
	DataDir  string    `json:"data_dir"`
	Version  string    `json:"version"`
	Accounts int       `json:"accounts"`
	Messages int       `json:"messages"`
	Queued   int       `json:"queued"`
	Files    int       `json:"files"`
	Bytes    int64     `json:"bytes"`
}

type backupArgs struct {
	Dir string `json:"dir"`
}

func cmdBackup(args []string, stdout, stderr io.Writer) error {
	fs, cf := newFlagSet("backup", stderr)
	verify := fs.Bool("verify", false, "check the backup in DIR (its manifest and its database) instead of making one")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return withExit(exitUsage, errors.New("name the backup directory: mailroom backup DIR"))
	}
	dir, err := filepath.Abs(pos[0])
	if err != nil {
		return withExit(exitUsage, err)
	}
	if *verify {
		info, err := verifyBackup(context.Background(), dir)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: sound: %d accounts, %d messages, %d queued, %d files, taken %s from %s\n",
			dir, info.Accounts, info.Messages, info.Queued, info.Files, info.Created.Format(time.RFC3339), info.DataDir)
		return nil
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	var info backupInfo
	if err := call(context.Background(), cfg, "backup", backupArgs{Dir: dir}, nil, &info); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d accounts, %d messages, %d queued, %d files (%d bytes)\n", dir, info.Accounts, info.Messages, info.Queued, info.Files, info.Bytes)
	return nil
}

func opBackup(ctx context.Context, a *app, raw json.RawMessage, _ io.Reader) (any, error) {
	args, err := decodeArgs[backupArgs](raw)
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(args.Dir) {
		return nil, &ctl.Error{Exit: exitUsage, Msg: "backup: the directory must be an absolute path"}
	}
	info, err := makeBackup(ctx, a, args.Dir)
	if err != nil {
		a.log.Error("backup failed", "dir", args.Dir, "err", err)
		return nil, &ctl.Error{Exit: exitTempFail, Msg: err.Error()}
	}
	a.log.Info("backup written", "dir", args.Dir, "accounts", info.Accounts, "messages", info.Messages, "files", info.Files)
	return info, nil
}

func makeBackup(ctx context.Context, a *app, dir string) (*backupInfo, error) {
	w, err := backup.Create(dir)
	if err != nil {
		return nil, err
	}
	info := &backupInfo{Created: time.Now().UTC().Truncate(time.Second), Hostname: a.cfg.Hostname, DataDir: a.cfg.DataDir, Version: version()}
	// First the database: everything acknowledged before this point is
	// in it or in the files copied after it.
	dbCopy := filepath.Join(dir, "mailroom.db")
	if err := a.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(dbCopy, 0o600) }); err != nil {
		return nil, fmt.Errorf("copy the database: %w", err)
	}
	if _, err := w.CopyTree(ctx, a.cfg.MailRoot(), "mail", durable.TempPrefix); err != nil {
		return nil, err
	}
	if _, err := w.CopyTree(ctx, filepath.Join(a.cfg.DataDir, "queue"), "queue", durable.TempPrefix); err != nil {
		return nil, err
	}
	if _, err := w.CopyTree(ctx, filepath.Join(a.cfg.DataDir, "dkim"), "dkim", ""); err != nil {
		return nil, err
	}
	// The queue's copy and the database's now disagree where messages
	// came or went in between: make them agree.
	db, err := bolt.Open(dbCopy, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open the database copy: %w", err)
	}
	_, removed, err := queue.Reconcile(db, filepath.Join(dir, "queue"))
	if err == nil {
		info.Accounts, info.Queued, err = countBackup(db)
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	for _, f := range removed {
		rel, _ := filepath.Rel(dir, f)
		w.Forget(rel)
	}
	if err := w.AddFile("mailroom.db"); err != nil {
		return nil, err
	}
	st := w.Stats()
	info.Messages, info.Files, info.Bytes = st.Messages, st.Files, st.Bytes
	b, _ := json.MarshalIndent(info, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "backup.json"), append(b, '\n'), 0o600); err != nil {
		return nil, err
	}
	if err := w.AddFile("backup.json"); err != nil {
		return nil, err
	}
	return info, w.Close()
}

// countBackup counts the accounts and queued messages in a backup's
// database.
func countBackup(db *bolt.DB) (accounts, queued int, err error) {
	accts, err := account.Open(db, account.Options{})
	if err != nil {
		return 0, 0, err
	}
	list, err := accts.List()
	if err != nil {
		return 0, 0, err
	}
	ids, err := queue.IDs(db)
	return len(list), len(ids), err
}

// verifyBackup checks every file of the backup in dir against its
// manifest, and its database as a start would.
func verifyBackup(ctx context.Context, dir string) (*backupInfo, error) {
	var info backupInfo
	b, err := os.ReadFile(filepath.Join(dir, "backup.json"))
	if err == nil {
		err = json.Unmarshal(b, &info)
	}
	if err != nil {
		return nil, withExit(exitDataErr, fmt.Errorf("%s is not a mailroom backup: backup.json: %w", dir, err))
	}
	if _, err := backup.Verify(dir); err != nil {
		return nil, withExit(exitDataErr, err)
	}
	if _, err := dbcheck.Check(ctx, filepath.Join(dir, "mailroom.db"), dbcheck.Options{}); err != nil {
		return nil, withExit(exitDataErr, fmt.Errorf("backup database: %w", err))
	}
	return &info, nil
}

func cmdRestore(args []string, stdout, stderr io.Writer) error {
	fs, cf := newFlagSet("restore", stderr)
	force := fs.Bool("force", false, "move the database, mail and queue already in data_dir aside (as NAME.before-restore-TIME) instead of refusing")
	keepUIDs := fs.Bool("keep-uids", false, "keep each folder's UIDVALIDITY, when no client can have seen mail after the backup (it was taken with the server stopped, before a move)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return withExit(exitUsage, errors.New("name the backup directory: mailroom restore DIR"))
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := ctl.Call(ctx, cfg.ControlSocket(), "ping", nil, nil, nil); !errors.Is(err, ctl.ErrNoServer) {
		return withExit(exitTempFail, fmt.Errorf("mailroom serve is running (%s answers): stop it first", cfg.ControlSocket()))
	}
	dir, err := filepath.Abs(pos[0])
	if err != nil {
		return withExit(exitUsage, err)
	}
	info, err := verifyBackup(ctx, dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return withExit(exitTempFail, err)
	}
	if err := clearForRestore(cfg, *force, stdout); err != nil {
		return err
	}
	for _, sub := range []string{"mail", "queue", "dkim"} {
		if err := copyDir(filepath.Join(dir, sub), filepath.Join(cfg.DataDir, sub)); err != nil {
			return withExit(exitTempFail, fmt.Errorf("restore %s: %w", sub, err))
		}
	}
	// The database last, whole or not at all: a restore cut short leaves
	// none, which every command then refuses, rather than a database
	// without its mail.
	tmp := cfg.DBPath() + ".restore"
	if err := copyFile(filepath.Join(dir, "mailroom.db"), tmp); err != nil {
		return withExit(exitTempFail, fmt.Errorf("restore the database: %w", err))
	}
	renewed, err := renewUIDValidity(tmp, *keepUIDs)
	if err != nil {
		os.Remove(tmp)
		return withExit(exitTempFail, fmt.Errorf("restore the database: %w", err))
	}
	if err := syncTree(cfg.DataDir); err != nil {
		return withExit(exitTempFail, err)
	}
	if err := os.Rename(tmp, cfg.DBPath()); err != nil {
		return withExit(exitTempFail, err)
	}
	if err := durable.SyncDir(cfg.DataDir); err != nil {
		return withExit(exitTempFail, err)
	}
	if renewed > 0 {
		fmt.Fprintf(stdout, "index: %d folders under a new UIDVALIDITY: mail clients fetch them again (rather than trust UIDs that mail received after the backup had)\n", renewed)
	}
	fmt.Fprintf(stdout, "restored %s (taken %s): %d accounts, %d messages, %d queued; start mailroom serve\n",
		dir, info.Created.Format(time.RFC3339), info.Accounts, info.Messages, info.Queued)
	return nil
}

// renewUIDValidity gives every folder of the database at path a new
// UIDVALIDITY unless keep: the UIDs handed out after the backup was
// taken would otherwise be handed out again to other messages.
func renewUIDValidity(path string, keep bool) (int, error) {
	if keep {
		return 0, nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return 0, err
	}
	n, err := maildir.RenewUIDValidity(db)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// clearForRestore refuses (or with force, moves aside) what data_dir
// already holds.
func clearForRestore(cfg *config.Config, force bool, stdout io.Writer) error {
	var present []string
	for _, name := range []string{"mailroom.db", "mail", "queue", "dkim"} {
		p := filepath.Join(cfg.DataDir, name)
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return withExit(exitTempFail, err)
		}
		if st.IsDir() {
			if ents, _ := os.ReadDir(p); len(ents) == 0 {
				os.Remove(p)
				continue
			}
		}
		present = append(present, name)
	}
	if len(present) == 0 {
		return nil
	}
	if !force {
		return withExit(exitDataErr, fmt.Errorf("%s already holds %s: restore into an empty data_dir, or add -force to move them aside", cfg.DataDir, strings.Join(present, ", ")))
	}
	stamp := time.Now().Format("20060102-150405")
	for _, name := range present {
		p := filepath.Join(cfg.DataDir, name)
		aside := p + ".before-restore-" + stamp
		if err := os.Rename(p, aside); err != nil {
			return withExit(exitTempFail, err)
		}
		fmt.Fprintf(stdout, "moved %s aside to %s\n", p, aside)
	}
	return durable.SyncDir(cfg.DataDir)
}

// copyDir copies the tree at src (if there is one) to dst.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == src {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o700)
		case d.Type().IsRegular():
			return copyFile(p, target)
		}
		return nil
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = backup.KeepMtime(in, dst)
	}
	return err
}

// syncTree flushes the file system that holds dir (every file restored).
func syncTree(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return syncfs(f)
}

func syncfs(f *os.File) error { return unix.Syncfs(int(f.Fd())) }
