package maildir

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// BenchmarkSync times Sync of a folder of 100,000 messages (set
// MAILROOM_BENCH_MESSAGES for another count), named as Stage names them
// (with S= and W=):
//
//   - cold-rebuild: no index at all (a first SELECT after the index was
//     lost): one readdir and a stat per file, then one bbolt transaction;
//   - cold-restart: the index is in bbolt, nothing in memory (the first
//     SELECT after a restart);
//   - warm: nothing changed since the last Sync (every later SELECT,
//     NOOP and IDLE poll);
//   - warm-one-new: one delivery since the last Sync.
//
// Run: go test -run XXX -bench BenchmarkSync -benchtime 5x ./mailbox/maildir/
func BenchmarkSync(b *testing.B) {
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("MAILROOM_BENCH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	dir := b.TempDir()
	root := filepath.Join(dir, "mail")
	store, err := Open(Options{Root: root, Hostname: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	home := "example.org/bench"
	md := filepath.Join(root, home, "Maildir")
	for _, d := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(md, d), 0o700)
	}
	body := []byte("From: a@example.org\nSubject: benchmark\n\nbody\n")
	for i := range n {
		name := fmt.Sprintf("%d.M%06dP1Q%d.bench,S=%d,W=%d:2,S", 1700000000+i/100, i%100, i, len(body), len(body)+4)
		if err := os.WriteFile(filepath.Join(md, "cur", name), body, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	settle := func() {
		for _, d := range []string{"cur", "new"} {
			os.Chtimes(filepath.Join(md, d), old, old)
		}
	}
	settle()
	ctx := context.Background()
	open := func(b *testing.B, dbPath string) (*bolt.DB, *Index) {
		db, err := bolt.Open(dbPath, 0o600, &bolt.Options{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		ix, err := NewIndex(db, store, IndexOptions{})
		if err != nil {
			b.Fatal(err)
		}
		return db, ix
	}
	sync := func(b *testing.B, ix *Index) int {
		f, err := ix.Open(ctx, home)
		if err != nil {
			b.Fatal(err)
		}
		s, err := f.Sync(ctx, "INBOX")
		if err != nil {
			b.Fatal(err)
		}
		return len(s.Messages)
	}

	b.Run("cold-rebuild", func(b *testing.B) {
		var cpu time.Duration
		defer func() { b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op") }()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			db, ix := open(b, filepath.Join(dir, fmt.Sprintf("rebuild%d.db", i)))
			b.StartTimer()
			c0 := cpuTime()
			if got := sync(b, ix); got != n {
				b.Fatalf("%d messages", got)
			}
			cpu += cpuTime() - c0
			b.StopTimer()
			ix.Close()
			db.Close()
			b.StartTimer()
		}
	})
	dbPath := filepath.Join(dir, "index.db")
	db, ix := open(b, dbPath)
	sync(b, ix)
	ix.Close()
	db.Close()
	b.Run("cold-restart", func(b *testing.B) {
		var cpu time.Duration
		defer func() { b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op") }()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			db, ix := open(b, dbPath)
			b.StartTimer()
			c0 := cpuTime()
			if got := sync(b, ix); got != n {
				b.Fatalf("%d messages", got)
			}
			cpu += cpuTime() - c0
			b.StopTimer()
			ix.Close()
			db.Close()
			b.StartTimer()
		}
	})
	db, ix = open(b, dbPath)
	defer db.Close()
	sync(b, ix)
	f, _ := ix.Open(ctx, home)
	b.Run("warm", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := f.Sync(ctx, "INBOX"); err != nil {
				b.Fatal(err)
			}
		}
	})
	// cur/ touched (as by a STORE's rename, or another program): read
	// again in full, nothing new.
	b.Run("warm-cur-read", func(b *testing.B) {
		var cpu time.Duration
		defer func() { b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op") }()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			t := time.Now().Add(-time.Duration(i+1) * time.Minute)
			os.Chtimes(filepath.Join(md, "cur"), t, t)
			b.StartTimer()
			c0 := cpuTime()
			if _, err := f.Sync(ctx, "INBOX"); err != nil {
				b.Fatal(err)
			}
			cpu += cpuTime() - c0
		}
	})
	b.Run("warm-one-new", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			m, err := store.Stage(ctx, home, bytes.NewReader(body))
			if err == nil {
				err = m.Commit(ctx)
			}
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := f.Sync(ctx, "INBOX"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkHeaderCache times the header cache as the IMAP server uses it
// for a FETCH 1:* ENVELOPE of a folder of 20,000 messages (set
// MAILROOM_BENCH_MESSAGES for another count): CachedFields in chunks of
// 1,000 UIDs once every entry is written, and CacheFields of every
// message.
func BenchmarkHeaderCache(b *testing.B) {
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("MAILROOM_BENCH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	dir := b.TempDir()
	root := filepath.Join(dir, "mail")
	store, err := Open(Options{Root: root, Hostname: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	home := "example.org/bench"
	md := filepath.Join(root, home, "Maildir")
	for _, d := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(md, d), 0o700)
	}
	body := []byte("From: a@example.org\nSubject: benchmark\n\nbody\n")
	for i := range n {
		name := fmt.Sprintf("%d.M%06dP1Q%d.bench,S=%d,W=%d:2,S", 1700000000+i/100, i%100, i, len(body), len(body)+4)
		if err := os.WriteFile(filepath.Join(md, "cur", name), body, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	db, err := bolt.Open(filepath.Join(dir, "index.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ix, err := NewIndex(db, store, IndexOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	ctx := context.Background()
	f, err := ix.Open(ctx, home)
	if err != nil {
		b.Fatal(err)
	}
	snap, err := f.Sync(ctx, "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	hc := f.(interface {
		CacheFields(string, uint32, []byte)
		CachedFields(context.Context, string, []uint32) (map[uint32][]byte, error)
	})
	fields := []byte("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nSubject: a subject of some length, as they are\r\nFrom: Someone Here <someone@example.org>\r\nTo: Another One <another@example.org>\r\nMessage-ID: <1234567890.abcdef@example.org>\r\n")
	uids := make([]uint32, len(snap.Messages))
	for i, m := range snap.Messages {
		uids[i] = m.UID
	}
	b.Run("CacheFields", func(b *testing.B) {
		for b.Loop() {
			for _, u := range uids {
				hc.CacheFields("INBOX", u, fields)
			}
		}
	})
	ix.cache.flush()
	b.Run("CachedFields-1000", func(b *testing.B) {
		for b.Loop() {
			for i := 0; i < len(uids); i += 1000 {
				m, err := hc.CachedFields(ctx, "INBOX", uids[i:min(i+1000, len(uids))])
				if err != nil || len(m) != min(1000, len(uids)-i) {
					b.Fatal(len(m), err)
				}
			}
		}
	})
}

// BenchmarkOpen times what FETCH ENVELOPE or SEARCH HEADER does per
// message: Open, read the first 512 bytes, seek back, Close.
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	root := filepath.Join(dir, "mail")
	store, err := Open(Options{Root: root, Hostname: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	home := "example.org/bench"
	md := filepath.Join(root, home, "Maildir")
	for _, d := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(md, d), 0o700)
	}
	body := bytes.Repeat([]byte("Subject: a line of some length\n"), 100)
	const n = 1000
	for i := range n {
		name := fmt.Sprintf("%d.M%06dP1Q%d.bench,S=%d,W=%d:2,S", 1700000000+i/100, i%100, i, len(body), len(body)+100)
		if err := os.WriteFile(filepath.Join(md, "cur", name), body, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	db, err := bolt.Open(filepath.Join(dir, "index.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ix, err := NewIndex(db, store, IndexOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	ctx := context.Background()
	f, err := ix.Open(ctx, home)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := f.Sync(ctx, "INBOX"); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 512)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r, _, err := f.Open(ctx, "INBOX", uint32(i%n+1))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(r, buf); err != nil {
			b.Fatal(err)
		}
		if _, err := r.Seek(100, io.SeekStart); err != nil {
			b.Fatal(err)
		}
		r.Close()
		i++
	}
}

// cpuTime is the CPU time (user and system) the process has used: on a
// busy machine a steadier measure than the wall clock.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
