package mda

import (
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"mailroom/mda/alias"
)

// aliasFile keeps the aliases table in force and reloads it when the file
// changes, so that an administrator who edits it need not signal the
// server (SIGHUP works too: SetAliases). A file with errors keeps the old
// table in force; the error, with file and line, is logged once per
// change.
type aliasFile struct {
	table atomic.Pointer[alias.Table]
	log   *slog.Logger

	mu    sync.Mutex // serialises reloads
	stamp atomic.Pointer[fileStamp]
}

// fileStamp identifies one version of a file cheaply.
type fileStamp struct {
	path  string
	ino   uint64
	size  int64
	mtime time.Time
	ctime syscall.Timespec
}

func newAliasFile(t *alias.Table, log *slog.Logger) *aliasFile {
	f := &aliasFile{log: log}
	f.set(t)
	return f
}

func stampOf(path string) *fileStamp {
	st := &fileStamp{path: path}
	fi, err := os.Stat(path)
	if err != nil {
		return st
	}
	st.size, st.mtime = fi.Size(), fi.ModTime()
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino, st.ctime = sys.Ino, sys.Ctim
	}
	return st
}

// set puts t in force and remembers the file's state as loaded.
func (f *aliasFile) set(t *alias.Table) {
	if t == nil {
		t, _ = alias.Load("")
	}
	f.table.Store(t)
	if t.File() != "" {
		f.stamp.Store(stampOf(t.File()))
	} else {
		f.stamp.Store(nil)
	}
}

// current returns the table in force, reloading it first if the file
// changed since it was loaded. The check is one stat(2).
func (f *aliasFile) current() *alias.Table {
	old := f.stamp.Load()
	if old == nil {
		return f.table.Load()
	}
	if now := stampOf(old.path); *now != *old {
		f.reload(old.path)
	}
	return f.table.Load()
}

func (f *aliasFile) reload(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := stampOf(path)
	if cur := f.stamp.Load(); cur != nil && *cur == *st {
		return // another delivery reloaded it meanwhile
	}
	t, err := alias.Load(path)
	f.stamp.Store(st)
	if err != nil {
		f.log.Error("aliases file not reloaded: the old table stays in force", "file", path, "err", err)
		return
	}
	f.table.Store(t)
	f.log.Info("aliases file reloaded", "file", path, "aliases", len(t.Names()))
}
