package main

import (
	"context"
	"crypto/tls"
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
	"mailroom/internal/certs"
	"mailroom/internal/ctl"
	"mailroom/internal/listen"
	"mailroom/lmtp"
	"mailroom/smtp"
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

// mailServer is what serve needs of the LMTP and SMTP servers.
type mailServer interface {
	Shutdown(context.Context) error
	Close() error
}

// serve runs every configured listener until ctx ends, then shuts down in
// two phases: stop accepting and let deliveries finish, then close the rest.
func serve(ctx context.Context, a *app) error {
	cfg, log := a.cfg, a.log
	ctlSrv := ctl.NewServer(log, a.panics)
	for name, fn := range ops {
		ctlSrv.Handle(name, func(ctx context.Context, args json.RawMessage, body io.Reader) (any, error) {
			return fn(ctx, a, args, body)
		})
	}

	var tlsConfig *tls.Config
	var certStore *certs.Store
	if cfg.TLS.Cert != "" {
		var err error
		if certStore, err = certs.Load(cfg.TLS.Cert, cfg.TLS.Key); err != nil {
			return withExit(exitConfig, err)
		}
		tlsConfig = certStore.Config()
	}

	var listeners []namedListener
	var servers []mailServer
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	add := func(addr, proto string, uo listen.UnixOptions, serve func(net.Listener) error) error {
		l, err := listen.Listen(addr, uo)
		if err != nil {
			return err
		}
		listeners = append(listeners, namedListener{l, proto, serve})
		return nil
	}
	err := func() error {
		cl, err := ctl.Listen(cfg.ControlSocket())
		if err != nil {
			return err
		}
		listeners = append(listeners, namedListener{cl, "ctl", func(l net.Listener) error { return ctlSrv.Serve(l) }})

		if len(cfg.LMTP.Listen) > 0 {
			mode, _ := cfg.SocketMode()
			srv := lmtp.New(lmtp.Options{
				Hostname:        cfg.Hostname,
				Deliverer:       a.mda,
				MaxMessageBytes: cfg.Limits.MaxMessageBytes,
				MaxRecipients:   cfg.Limits.MaxRecipients,
				MaxLineLength:   cfg.Limits.MaxLineLength,
				ReadTimeout:     cfg.Limits.IdleTimeout.Duration,
				Logger:          log,
				Panics:          a.panics,
			})
			servers = append(servers, srv)
			for _, addr := range cfg.LMTP.Listen {
				if err := add(addr, "lmtp", listen.UnixOptions{Mode: mode, Group: cfg.LMTP.SocketGroup}, srv.Serve); err != nil {
					return err
				}
			}
		}
		for _, role := range []struct {
			role smtp.Role
			conf config.Listener
		}{{smtp.MX, cfg.SMTP}, {smtp.Submission, cfg.Submission}} {
			if len(role.conf.Listen)+len(role.conf.ListenTLS) == 0 {
				continue
			}
			srv := smtp.New(a.smtpOptions(role.role, role.conf, tlsConfig))
			servers = append(servers, srv)
			name := role.role.String()
			for _, addr := range role.conf.Listen {
				if err := add(addr, name, listen.UnixOptions{}, srv.Serve); err != nil {
					return err
				}
			}
			for _, addr := range role.conf.ListenTLS {
				if err := add(addr, name+"s", listen.UnixOptions{}, srv.ServeTLS); err != nil {
					return err
				}
			}
		}
		imapSrv, err := a.addIMAP(tlsConfig, add)
		if imapSrv != nil {
			servers = append(servers, imapSrv)
		}
		return err
	}()
	if err != nil {
		closeAll()
		return withExit(exitTempFail, err)
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
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	stopQueue := runQueue(context.WithoutCancel(ctx), a, a.queue)
	log.Info("mailroom started", "hostname", cfg.Hostname, "data_dir", cfg.DataDir, "domains", cfg.Domains, "pid", os.Getpid())

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			// Accounts are read from the database on every lookup; the
			// aliases file and the certificate are read again here.
			if err := reloadAliases(a); err != nil {
				log.Error("aliases file not reloaded; the old table stays in force", "err", err)
			}
			if certStore != nil {
				if err := certStore.Reload(); err != nil {
					log.Error("TLS certificate not reloaded; the old one stays in use", "err", err)
					continue
				}
				log.Info("TLS certificate reloaded")
			}
			log.Info("reloaded")
		case runErr = <-errc:
			log.Error("listener failed", "err", runErr)
			break loop
		}
	}

	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var swg sync.WaitGroup
	// The queue starts nothing new from now on (attempts under way get
	// its own grace); messages still being received are enqueued and
	// sent after the restart.
	swg.Go(stopQueue)
	for _, srv := range servers {
		swg.Go(func() {
			if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, gosmtp.ErrServerClosed) {
				log.Warn("deliveries did not finish in time; closing", "err", err)
				srv.Close()
			}
		})
	}
	swg.Wait()
	ctlSrv.Close()
	wg.Wait()
	log.Info("stopped")
	return runErr
}

// smtpOptions configures an SMTP server for role.
func (a *app) smtpOptions(role smtp.Role, l config.Listener, tlsConfig *tls.Config) smtp.Options {
	cfg := a.cfg
	return smtp.Options{
		Role:              role,
		Hostname:          cfg.Hostname,
		Deliverer:         a.mda,
		Accounts:          a.accounts,
		Queue:             a.queue,
		Delimiter:         cfg.RecipientDelimiter(),
		TLS:               tlsConfig,
		AllowInsecureAuth: l.AllowInsecureAuth,
		MaxMessageBytes:   cfg.Limits.MaxMessageBytes,
		MaxRecipients:     cfg.Limits.MaxRecipients,
		MaxLineLength:     cfg.Limits.MaxLineLength,
		MaxConns:          cfg.Limits.MaxConnections,
		MaxConnsPerIP:     cfg.Limits.MaxConnectionsPerIP,
		IdleTimeout:       cfg.Limits.IdleTimeout.Duration,
		Logger:            a.log,
		Panics:            a.panics,
	}
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
