// Command imapprof serves mailroom's IMAP code (package imap over
// maildir.Index, or mbox.Store with -format mbox) in-process on a data_dir made by bench/imap.sh, with
// profiles, so that where the time goes in a slow operation can be read
// with `go tool pprof`. It is a benchmark tool, run by hand; no test runs
// it, and `mailroom serve` exposes no profiles of its own.
//
//	imapprof -data DATA_DIR [-addr 127.0.0.1:0] [-cpuprofile cpu.out] [-memprofile mem.out] [-blockprofile block.out]
//
// It opens DATA_DIR/mailroom.db and the mail root DATA_DIR/mail as
// `mailroom serve` does (accounts, maildir.Store, maildir.Index), prints
// "RESULT addr=HOST:PORT" once it listens, and serves until SIGTERM or
// SIGINT; then it writes the profiles. Profile one operation with, e.g.:
//
//	imapprof -data $WORK/mailroom/n100000 -cpuprofile cpu.out &
//	imapbench op -addr ADDR -op search-body
//	kill %1; go tool pprof -top -cum imapprof cpu.out
//
// The CPU profile covers the whole life of the server: start it, run the
// one operation to look at (after a warm-up if warm figures are wanted:
// -cpuprofile-after N starts the profile only at the Nth connection).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailroom/account"
	"mailroom/imap"
	"mailroom/mailbox/maildir"
	"mailroom/mailbox/mbox"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "imapprof:", err)
		os.Exit(1)
	}
}

func run() error {
	data := flag.String("data", "", "mailroom data_dir (mailroom.db and mail/)")
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	domain := flag.String("domain", "example.org", "local domain of the accounts")
	cpu := flag.String("cpuprofile", "", "write a CPU profile here")
	after := flag.Int("cpuprofile-after", 1, "start the CPU profile when this connection (1 = the first) arrives")
	mem := flag.String("memprofile", "", "write a heap profile here at the end")
	block := flag.String("blockprofile", "", "write a profile of where goroutines waited (locks, channels, I/O) here at the end")
	format := flag.String("format", "maildir", `the data_dir's [delivery] format: "maildir" or "mbox"`)
	flag.Parse()
	if *data == "" {
		return errors.New("need -data")
	}
	db, err := bolt.Open(filepath.Join(*data, "mailroom.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	accounts, err := account.Open(db, account.Options{Domains: []string{*domain}})
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var st imap.Store
	switch *format {
	case "maildir":
		store, err := maildir.Open(maildir.Options{Root: filepath.Join(*data, "mail"), Hostname: "imapprof.bench.test"})
		if err != nil {
			return err
		}
		defer store.Close()
		ix, err := maildir.NewIndex(db, store, maildir.IndexOptions{Logger: log})
		if err != nil {
			return err
		}
		defer ix.Close()
		st = ix
	case "mbox":
		store, err := mbox.OpenStore(mbox.StoreOptions{Root: filepath.Join(*data, "mail"), DB: db, Logger: log})
		if err != nil {
			return err
		}
		defer store.Close()
		st = store
	default:
		return fmt.Errorf("-format %q: want maildir or mbox", *format)
	}
	srv := imap.New(imap.Options{
		Store:             st,
		AllowInsecureAuth: true,
		Logger:            log,
		Auth: imap.AuthenticatorFunc(func(ctx context.Context, user, pass string) (string, error) {
			a, err := accounts.Authenticate(user, pass)
			if err != nil {
				return "", err
			}
			return a.Home(), nil
		}),
	})
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	if *block != "" {
		runtime.SetBlockProfileRate(int(100 * time.Microsecond))
		runtime.SetMutexProfileFraction(1)
	}
	var (
		conns    atomic.Int64
		profFile *os.File
		started  = make(chan struct{})
	)
	if *cpu != "" {
		profFile, err = os.Create(*cpu)
		if err != nil {
			return err
		}
	}
	startProfile := func() {
		if profFile != nil {
			if err := pprof.StartCPUProfile(profFile); err != nil {
				fmt.Fprintln(os.Stderr, "imapprof: cpu profile:", err)
			}
		}
		close(started)
	}
	if *after <= 1 {
		startProfile()
	}
	counted := &countingListener{Listener: l, accepted: func() {
		if int(conns.Add(1)) == *after && *after > 1 {
			startProfile()
		}
	}}
	fmt.Printf("RESULT addr=%s\n", l.Addr())
	os.Stdout.Sync()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(counted) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case err := <-errc:
		return err
	}
	select {
	case <-started:
		if profFile != nil {
			pprof.StopCPUProfile()
			profFile.Close()
		}
	default:
	}
	if *block != "" {
		if err := writeProfile("block", *block); err != nil {
			return err
		}
		if err := writeProfile("mutex", *block+".mutex"); err != nil {
			return err
		}
	}
	if *mem != "" {
		f, err := os.Create(*mem)
		if err != nil {
			return err
		}
		runtime.GC()
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	return nil
}

func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup(name).WriteTo(f, 0)
}

// countingListener calls accepted for every connection it accepts.
type countingListener struct {
	net.Listener
	accepted func()
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted()
	}
	return c, err
}
