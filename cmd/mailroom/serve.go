package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/config"
	"mailroom/internal/ctl"
	"mailroom/internal/listen"
	"mailroom/lmtp"
)

// shutdownGrace bounds how long in-flight deliveries may take to finish
// after SIGTERM before their connections are cut (unacknowledged).
const shutdownGrace = 30 * time.Second

func cmdServe(args []string, stdout, stderr io.Writer) error {
	fs, cf := newFlagSet("serve", stderr)
	dev := fs.Bool("dev", false, "development mode: a private server on loopback under ./mailroom-dev with a ready account")
	debug := fs.Bool("debug", false, "log decisions at debug level")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var cfg *config.Config
	var err error
	if *dev {
		cfg, err = devConfig(cf.config)
	} else {
		cfg, err = cf.load()
	}
	if err != nil {
		return err
	}
	a, err := openApp(cfg, log, time.Second)
	if errors.Is(err, errDBLocked) {
		return withExit(exitTempFail, fmt.Errorf("%w: another mailroom serve is running with this data_dir", err))
	}
	if err != nil {
		return err
	}
	defer a.Close()
	if *dev {
		if err := devAccount(a, stdout); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, a)
}

// serve runs every configured listener until ctx ends, then shuts down in
// two phases: stop accepting and let deliveries finish, then close the rest.
func serve(ctx context.Context, a *app) error {
	cfg, log := a.cfg, a.log
	ctlSrv := ctl.NewServer(log)
	for name, fn := range ops {
		ctlSrv.Handle(name, func(ctx context.Context, args json.RawMessage, body io.Reader) (any, error) {
			return fn(ctx, a, args, body)
		})
	}
	mode, _ := cfg.SocketMode()
	lmtpSrv := lmtp.New(lmtp.Options{
		Hostname:        cfg.Hostname,
		Deliverer:       a.mda,
		MaxMessageBytes: cfg.Limits.MaxMessageBytes,
		MaxRecipients:   cfg.Limits.MaxRecipients,
		Logger:          log,
	})

	var listeners []namedListener
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	cl, err := ctl.Listen(cfg.ControlSocket())
	if err != nil {
		return withExit(exitTempFail, err)
	}
	listeners = append(listeners, namedListener{cl, "ctl", func(l net.Listener) error { return ctlSrv.Serve(l) }})
	for _, addr := range cfg.LMTP.Listen {
		l, err := listen.Listen(addr, listen.UnixOptions{Mode: mode, Group: cfg.LMTP.SocketGroup})
		if err != nil {
			closeAll()
			return withExit(exitTempFail, err)
		}
		listeners = append(listeners, namedListener{l, "lmtp", lmtpSrv.Serve})
	}

	errc := make(chan error, len(listeners))
	var wg sync.WaitGroup
	for _, l := range listeners {
		log.Info("listening", "proto", l.proto, "addr", listenAddr(l))
		wg.Go(func() {
			if err := l.serve(l); err != nil && !errors.Is(err, gosmtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				errc <- fmt.Errorf("%s on %s: %w", l.proto, listenAddr(l), err)
			}
		})
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	log.Info("mailroom started", "hostname", cfg.Hostname, "data_dir", cfg.DataDir, "domains", cfg.Domains, "pid", os.Getpid())

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			// Accounts are read from the database on every lookup, so a
			// reload has nothing to re-read yet; aliases and TLS
			// certificates will hang off this signal.
			log.Info("reload requested: accounts are always current")
		case runErr = <-errc:
			log.Error("listener failed", "err", runErr)
			break loop
		}
	}

	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := lmtpSrv.Shutdown(sctx); err != nil && !errors.Is(err, gosmtp.ErrServerClosed) {
		log.Warn("deliveries did not finish in time; closing", "err", err)
		lmtpSrv.Close()
	}
	ctlSrv.Close()
	wg.Wait()
	log.Info("stopped")
	return runErr
}

type namedListener struct {
	net.Listener
	proto string
	serve func(net.Listener) error
}

func listenAddr(l net.Listener) string {
	if l.Addr().Network() == "unix" {
		return "unix:" + l.Addr().String()
	}
	return l.Addr().String()
}
