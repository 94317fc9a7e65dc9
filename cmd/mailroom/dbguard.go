package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"mailroom/account"
	"mailroom/config"
	"mailroom/internal/dbcheck"
)

// Every command that opens mailroom.db first has it checked in a child
// process (internal/dbcheck): a damaged file is refused with one line
// that names it and the way out, never opened (bbolt can crash the process
// on a corrupt page). An empty database where mail homes exist is refused
// too: opening it would start a fresh install, every account gone, and
// mail to those users would bounce for good.

// recovery is what the refusals tell the administrator to do.
const recovery = `stop mailroom and run "mailroom check -repair" (it keeps the old file aside and saves what it can), or bring back a backup with "mailroom restore DIR"`

// errDBRefused marks a database that is damaged, or empty while mail
// homes exist.
var errDBRefused = errors.New("refused")

// dbRefusal is the one-line refusal.
type dbRefusal struct{ msg string }

func (e *dbRefusal) Error() string        { return e.msg }
func (e *dbRefusal) Is(target error) bool { return target == errDBRefused }

// vetDB decides whether mailroom.db may be opened. It returns nil for a
// sound file and for a new install (no file, or an empty one, and no mail
// homes).
func vetDB(ctx context.Context, cfg *config.Config, lockWait time.Duration) error {
	path := cfg.DBPath()
	info, err := dbcheck.Check(ctx, path, dbcheck.Options{LockWait: lockWait})
	var de *dbcheck.DamageError
	what := "empty"
	switch {
	case errors.Is(err, fs.ErrNotExist):
		info, what = dbcheck.Info{}, "missing"
	case errors.Is(err, dbcheck.ErrLocked):
		return withExit(exitTempFail, fmt.Errorf("%s: %w (is another mailroom serve running without its control socket?)", path, errDBLocked))
	case errors.As(err, &de):
		return withExit(exitTempFail, &dbRefusal{fmt.Sprintf("%s is damaged (%s); nothing was changed: %s", path, de.Reason, recovery)})
	case err != nil:
		return withExit(exitTempFail, err)
	}
	if _, ok := info.Buckets[account.Bucket]; ok {
		return nil
	}
	// No accounts bucket: a new database, or one that lost everything.
	homes, err := mailHomes(cfg)
	if err != nil {
		return withExit(exitTempFail, err)
	}
	if len(homes) == 0 {
		return nil
	}
	return withExit(exitTempFail, &dbRefusal{fmt.Sprintf("%s is %s, but %d mail home(s) exist under %s (%s): refusing to start afresh, which would lose every account; %s",
		path, what, len(homes), cfg.MailRoot(), strings.Join(homes[:min(len(homes), 3)], ", "), strings.Replace(recovery, "saves what it can", "makes an account for each mail home", 1))})
}

// mailHomes lists the mail homes on disk, "<domain>/<local>", sorted:
// the directories two levels below the mail root.
func mailHomes(cfg *config.Config) ([]string, error) {
	root := cfg.MailRoot()
	domains, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list mail homes: %w", err)
	}
	var homes []string
	for _, d := range domains {
		if !d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			continue
		}
		locals, err := os.ReadDir(filepath.Join(root, d.Name()))
		if err != nil {
			return nil, fmt.Errorf("list mail homes: %w", err)
		}
		for _, l := range locals {
			if l.IsDir() && !strings.HasPrefix(l.Name(), ".") {
				homes = append(homes, d.Name()+"/"+l.Name())
			}
		}
	}
	slices.Sort(homes)
	return homes, nil
}

// guarded runs fn, turning a panic or a memory fault (bbolt reading a
// page that went bad after the check) into an error that says what to do,
// so that a command never dies with a Go stack trace.
func guarded(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = withExit(exitTempFail, &dbRefusal{fmt.Sprintf("reading %s failed (%v): it may be damaged; %s", path, r, recovery)})
		}
	}()
	return fn()
}
