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
	"golang.org/x/sync/errgroup"

	"mailroom/config"
	"mailroom/internal/certs"
	"mailroom/internal/ctl"
	"mailroom/internal/listen"
	"mailroom/internal/metrics"
	"mailroom/lmtp"
	"mailroom/smtp"
	"mailroom/socketmap"
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
	// With [metrics], every outcome record is counted as it is logged.
	mx, log := withMetrics(cfg.Metrics.Listen, newLogger(cfg.Log, stderr, *debug))
	// As root with [server] user: bind, then become that user before
	// anything in data_dir is opened.
	pre, err := dropPrivileges(cfg, log)
	if err != nil {
		return err
	}
	defer pre.Close()
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
	a.prebound = pre
	a.metrics = mx
	return serve(ctx, a)
}

// newLogger is serve's logger: [log] format's handler on w, at Info (or
// Debug with -debug).
func newLogger(c config.Log, w io.Writer, debug bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if debug {
		opts.Level = slog.LevelDebug
	}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// mailServer is what serve needs of the LMTP, SMTP and IMAP servers.
type mailServer interface {
	Shutdown(context.Context) error
	Close() error
}

// serve runs every configured listener until ctx ends or one fails, then
// shuts down in two phases: stop accepting and let deliveries finish,
// then close the rest.
func serve(ctx context.Context, a *app) error {
	certStore, tlsConfig, err := loadTLS(a.cfg)
	if err != nil {
		return withExit(exitConfig, err)
	}
	a.certs = certStore
	svc, err := buildServers(a, tlsConfig)
	if err != nil {
		return withExit(exitTempFail, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, l := range svc.listeners {
		a.log.Info("listening", "proto", l.proto, "addr", listenAddr(l))
		g.Go(func() error {
			if err := l.serve(l); err != nil && !errors.Is(err, gosmtp.ErrServerClosed) && !errors.Is(err, socketmap.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("%s on %s: %w", l.proto, listenAddr(l), err)
			}
			return nil
		})
	}
	for _, w := range a.cfg.Warnings() {
		a.log.Warn(w)
	}
	stopQueue := runQueue(context.WithoutCancel(ctx), a, a.queue)
	a.log.Info("mailroom started", "hostname", a.cfg.Hostname, "data_dir", a.cfg.DataDir, "domains", a.cfg.Domains, "pid", os.Getpid())

	go sdWatchdog(gctx, a)
	reloadOnHUP(gctx, a, certStore)
	if ctx.Err() == nil {
		a.log.Error("listener failed", "err", context.Cause(gctx))
	}
	a.log.Info("shutting down")
	sdStopping(a.log)
	svc.shutdown(a.log, stopQueue)
	err = g.Wait()
	a.log.Info("stopped")
	return err
}

// loadTLS loads [tls]'s key pair, if one is configured.
func loadTLS(cfg *config.Config) (*certs.Store, *tls.Config, error) {
	if cfg.TLS.Cert == "" {
		return nil, nil, nil
	}
	st, err := certs.Load(cfg.TLS.Cert, cfg.TLS.Key)
	if err != nil {
		return nil, nil, err
	}
	return st, st.Config(), nil
}

// services are the servers of `serve` and the listeners they serve.
type services struct {
	ctl       *ctl.Server
	servers   []mailServer
	listeners []namedListener
	// prebound are the listeners bound before privileges were dropped.
	prebound *prebound
	// metrics, if set, counts the connections of every listener.
	metrics *metrics.Metrics
}

// buildServers creates the control socket and every configured server,
// and opens their listeners; on error, what it opened is closed again.
func buildServers(a *app, tlsConfig *tls.Config) (*services, error) {
	cfg := a.cfg
	svc := &services{ctl: ctl.NewServer(a.log, a.panics), prebound: a.prebound, metrics: a.metrics}
	for name, fn := range ops {
		svc.ctl.Handle(name, func(ctx context.Context, args json.RawMessage, body io.Reader) (any, error) {
			return fn(ctx, a, args, body)
		})
	}
	err := func() error {
		cl, err := ctl.Listen(cfg.ControlSocket())
		if err != nil {
			return err
		}
		svc.listeners = append(svc.listeners, namedListener{cl, "ctl", func(l net.Listener) error { return svc.ctl.Serve(l) }})
		if err := svc.addLMTP(a); err != nil {
			return err
		}
		for _, role := range []struct {
			role smtp.Role
			conf config.Listener
		}{{smtp.MX, cfg.SMTP}, {smtp.Submission, cfg.Submission}} {
			if len(role.conf.Listen)+len(role.conf.ListenTLS) == 0 {
				continue
			}
			opts, err := a.smtpOptions(role.role, role.conf, tlsConfig)
			if err != nil {
				return withExit(exitConfig, err)
			}
			srv := smtp.New(opts)
			svc.servers = append(svc.servers, srv)
			name := role.role.String()
			for _, addr := range role.conf.Listen {
				if err := svc.add(addr, name, listen.UnixOptions{}, srv.Serve); err != nil {
					return err
				}
			}
			for _, addr := range role.conf.ListenTLS {
				if err := svc.add(addr, name+"s", listen.UnixOptions{}, srv.ServeTLS); err != nil {
					return err
				}
			}
		}
		if err := svc.addSocketmap(a); err != nil {
			return err
		}
		imapSrv, err := a.addIMAP(tlsConfig, svc.add)
		if imapSrv != nil {
			svc.servers = append(svc.servers, imapSrv)
		}
		if err != nil {
			return err
		}
		msSrv, err := a.addManageSieve(tlsConfig, svc.add)
		if msSrv != nil {
			svc.servers = append(svc.servers, msSrv)
		}
		if err != nil {
			return err
		}
		return svc.addMetrics(a)
	}()
	if err != nil {
		for _, l := range svc.listeners {
			l.Close()
		}
		return nil, err
	}
	return svc, nil
}

// add opens a listener on addr for proto, served by serve.
func (svc *services) add(addr, proto string, uo listen.UnixOptions, serve func(net.Listener) error) error {
	l, err := svc.prebound.listen(addr, uo)
	if err != nil {
		return err
	}
	if svc.metrics != nil && proto != "metrics" {
		l = svc.metrics.Listener(l, proto)
	}
	svc.listeners = append(svc.listeners, namedListener{l, proto, serve})
	return nil
}

// addLMTP creates the LMTP server if [lmtp] listen names any address.
func (svc *services) addLMTP(a *app) error {
	cfg := a.cfg
	if len(cfg.LMTP.Listen) == 0 {
		return nil
	}
	mode, err := cfg.SocketMode()
	if err != nil {
		return err
	}
	srv := lmtp.New(lmtp.Options{
		Hostname:        cfg.Hostname,
		Deliverer:       a.mda,
		MaxMessageBytes: cfg.Limits.MaxMessageBytes,
		MaxRecipients:   cfg.Limits.MaxRecipients,
		MaxLineLength:   cfg.Limits.MaxLineLength,
		ReadTimeout:     cfg.Limits.IdleTimeout.Duration,
		MinDataRate:     cfg.Limits.MinDataRate,
		Logger:          a.log,
		Panics:          a.panics,
	})
	svc.servers = append(svc.servers, srv)
	for _, addr := range cfg.LMTP.Listen {
		if err := svc.add(addr, "lmtp", listen.UnixOptions{Mode: mode, Group: cfg.LMTP.SocketGroup}, srv.Serve); err != nil {
			return err
		}
	}
	return nil
}

// reloadOnHUP reloads the domains, the aliases file and the TLS
// certificate on each SIGHUP until ctx ends. Accounts are read from the
// database on every lookup and need no reload.
func reloadOnHUP(ctx context.Context, a *app, certStore *certs.Store) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// Ready only now: a reload (systemctl reload: SIGHUP) that came before
	// the handler would kill the process.
	sdReady(a.log, a.domains())
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			sdReloading(a.log)
			reload(a, certStore)
			sdReady(a.log, a.domains())
		}
	}
}

// reload reads the configuration (reload.go), the aliases file and the
// certificate again; what fails to load is logged and the old one stays
// in force.
func reload(a *app, certStore *certs.Store) {
	ok := reloadConfig(a)
	// The metrics say whether everything was taken (an alert on a
	// reload that was not, as for Prometheus's own).
	defer func() { a.metrics.Reloaded(ok) }()
	if err := reloadAliases(a); err != nil {
		a.log.Error("aliases file not reloaded; the old table stays in force", "err", err)
		ok = false
	}
	if certStore != nil {
		if err := certStore.Reload(); err != nil {
			a.log.Error("TLS certificate not reloaded; the old one stays in use", "err", err)
			ok = false
			return
		}
		a.log.Info("TLS certificate reloaded")
	}
	a.log.Info("reloaded")
}

// shutdown stops the servers in two phases (DESIGN: Shutdown with a
// grace period, then Close for what did not finish), the queue alongside,
// and the control socket last, so that a CLI command can still be
// answered while the servers drain.
func (svc *services) shutdown(log *slog.Logger, stopQueue func()) {
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	// The queue starts nothing new from now on (attempts under way get
	// its own grace); messages still being received are enqueued and
	// sent after the restart.
	wg.Go(stopQueue)
	for _, srv := range svc.servers {
		wg.Go(func() {
			if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, gosmtp.ErrServerClosed) {
				log.Warn("deliveries did not finish in time; closing", "err", err)
				srv.Close()
			}
		})
	}
	wg.Wait()
	svc.ctl.Close()
}

// smtpOptions configures an SMTP server for role.
func (a *app) smtpOptions(role smtp.Role, l config.Listener, tlsConfig *tls.Config) (smtp.Options, error) {
	cfg := a.cfg
	auth, err := a.mailAuth(role)
	if err != nil {
		return smtp.Options{}, err
	}
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
		MinDataRate:       cfg.Limits.MinDataRate,
		Throttle:          a.throttle,
		Auth:              auth,
		Logger:            a.log,
		Panics:            a.panics,
	}, nil
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
