package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"mailroom/account"
	"mailroom/config"
	"mailroom/internal/authdelay"
	"mailroom/internal/certs"
	"mailroom/internal/ctl"
	"mailroom/internal/metrics"
	"mailroom/internal/panics"
	"mailroom/internal/resolve"
	"mailroom/internal/srs"
	"mailroom/mailauth/dkim"
	"mailroom/mailbox/maildir"
	"mailroom/mailbox/mbox"
	"mailroom/mda"
	"mailroom/mda/alias"
	"mailroom/queue"
	"mailroom/sieve/sievestore"
)

// app is everything that holds mailroom.db open: `serve` builds one for
// its lifetime, the other commands build one for a single operation when no
// server is running.
type app struct {
	cfg      *config.Config
	log      *slog.Logger
	db       *bolt.DB
	accounts *account.Store
	store    mailStore
	// maildir and mboxes are the store, as the one of the two it is.
	maildir *maildir.Store
	mboxes  *mbox.Store
	mda     *mda.Deliverer
	queue   *queue.Queue
	// reloaded is the configuration as last reloaded by SIGHUP (nil:
	// cfg). Only the reload goroutine uses it; everything else keeps to
	// cfg, what serve started with, except the domains (reload.go).
	reloaded *config.Config
	// scripts are the users' Sieve scripts (sieve.go).
	scripts *sievestore.Store
	// panics counts the panics recovered in every server and worker of
	// the process.
	panics *panics.Recorder
	// throttle holds back client addresses after failed logins, on
	// every protocol alike.
	throttle *authdelay.Throttle
	// resolver asks DNS for everything ([dns] server); signer is nil
	// without [[dkim]] keys (auth.go).
	resolver *resolve.Resolver
	signer   *dkim.Signer
	// prebound are the listeners serve bound before it dropped root.
	prebound *prebound
	// metrics counts what serve does, with [metrics] listen (else nil).
	metrics *metrics.Metrics
	// certs is serve's [tls] key pair (nil without one).
	certs *certs.Store
}

// errDBLocked means another process holds mailroom.db.
var errDBLocked = errors.New("mailroom.db is locked by another process")

// openApp checks mailroom.db (dbguard.go), then opens it and everything
// that keeps its data there.
func openApp(cfg *config.Config, log *slog.Logger, lockWait time.Duration) (*app, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, withExit(exitTempFail, fmt.Errorf("create data_dir: %w", err))
	}
	if err := vetDB(context.Background(), cfg, lockWait); err != nil {
		return nil, err
	}
	return openChecked(cfg, log, lockWait)
}

// openChecked is openApp for a database already checked (or made anew
// by repair).
func openChecked(cfg *config.Config, log *slog.Logger, lockWait time.Duration) (*app, error) {
	db, err := bolt.Open(cfg.DBPath(), 0o600, &bolt.Options{Timeout: lockWait})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, withExit(exitTempFail, fmt.Errorf("%s: %w (is another mailroom serve running without its control socket?)", cfg.DBPath(), errDBLocked))
	}
	if err != nil {
		return nil, withExit(exitTempFail, fmt.Errorf("open %s: %w", cfg.DBPath(), err))
	}
	a := &app{cfg: cfg, log: log, db: db, panics: new(panics.Recorder), throttle: authdelay.New(time.Second, nil)}
	if err := a.init(); err != nil {
		db.Close()
		return nil, withExit(exitTempFail, err)
	}
	return a, nil
}

func (a *app) init() error {
	var err error
	if err := a.initAuth(); err != nil {
		return err
	}
	a.accounts, err = account.Open(a.db, account.Options{Domains: a.cfg.Domains, BcryptCost: a.cfg.Accounts.BcryptCost})
	if err != nil {
		return err
	}
	if err := a.openStore(); err != nil {
		return err
	}
	spool := filepath.Join(a.cfg.DataDir, "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return fmt.Errorf("create spool directory: %w", err)
	}
	aliases, err := alias.Load(a.cfg.Delivery.Aliases)
	if err != nil {
		return fmt.Errorf("delivery.aliases: %w", err)
	}
	rs, err := a.cfg.Relay.Settings()
	if err != nil {
		return err
	}
	var rewriter *srs.SRS
	if len(rs.SRSSecrets) > 0 {
		rewriter, err = srs.New(srs.Options{Secret: rs.SRSSecrets[0], OldSecrets: rs.SRSSecrets[1:],
			Domain: cmp.Or(rs.SRSDomain, a.cfg.Domains[0])})
		if err != nil {
			return fmt.Errorf("relay.srs_secret: %w", err)
		}
	}
	sieveOpts, err := a.initSieve()
	if err != nil {
		return err
	}
	a.mda, err = mda.New(mda.Options{
		Hostname:          a.cfg.Hostname,
		Domains:           a.cfg.Domains,
		Delimiter:         a.cfg.RecipientDelimiter(),
		Accounts:          a.accounts,
		Store:             a.store,
		MailRoot:          a.cfg.MailRoot(),
		Aliases:           aliases,
		ForwardFiles:      a.cfg.ForwardFiles(),
		AllowCommands:     a.cfg.Delivery.AllowCommands,
		AllowFiles:        a.cfg.Delivery.AllowFiles,
		CommandTimeout:    a.cfg.Delivery.CommandTimeout.Duration,
		CommandCredential: commandCredential(),
		Forwarder:         forwarder{a},
		SRS:               rewriter,
		Sieve:             sieveOpts,
		SpoolDir:          spool,
		MaxMessageBytes:   a.cfg.Limits.MaxMessageBytes,
		Logger:            a.log,
	})
	if err != nil {
		return err
	}
	a.queue, err = openQueue(a, a.cfg.Queue)
	return err
}

// commandCredential is who |command targets run as: nobody when mailroom
// runs as root (Postfix's default_privs), else mailroom's own user.
func commandCredential() *syscall.Credential {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid := uint32(65534), uint32(65534)
	if u, err := user.Lookup("nobody"); err == nil {
		if n, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
			uid = uint32(n)
		}
		if n, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
			gid = uint32(n)
		}
	}
	return &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}
}

// forwarder hands mda's remote targets and bounces to the queue, which is
// opened after mda (it delivers local mail through mda).
type forwarder struct{ a *app }

func (f forwarder) Enqueue(ctx context.Context, from string, to []string, r io.Reader) (string, error) {
	if f.a.queue == nil {
		return "", errors.New("the queue is not open")
	}
	return f.a.queue.Enqueue(ctx, from, to, r)
}

func (f forwarder) Bounce(ctx context.Context, from string, failures []mda.Failure, r io.Reader) error {
	if f.a.queue == nil {
		return errors.New("the queue is not open")
	}
	qf := make([]queue.Failure, len(failures))
	for i, x := range failures {
		qf[i] = queue.Failure{Rcpt: x.Rcpt, Status: x.Status, Err: x.Err}
	}
	return f.a.queue.Bounce(ctx, from, qf, r)
}

func (a *app) Close() error {
	if a.store != nil {
		a.store.Close()
	}
	if a.scripts != nil {
		a.scripts.Close()
	}
	return a.db.Close()
}

// op is one operation of the control protocol. The same function serves a
// request from the control socket (inside `serve`) and a command run with
// no server, so both paths behave alike.
type op func(ctx context.Context, a *app, args json.RawMessage, body io.Reader) (any, error)

var ops = map[string]op{
	"user.add":       opUserAdd,
	"user.passwd":    opUserPasswd,
	"user.del":       opUserDel,
	"user.list":      opUserList,
	"deliver":        opDeliver,
	"queue.list":     opQueueList,
	"queue.flush":    opQueueFlush,
	"queue.drop":     opQueueDrop,
	"route":          opRoute,
	"sieve.list":     opSieveList,
	"sieve.get":      opSieveGet,
	"sieve.put":      opSievePut,
	"sieve.check":    opSieveCheck,
	"sieve.activate": opSieveActivate,
	"sieve.del":      opSieveDel,
	"ping":           opPing,
	"backup":         opBackup,
	"db.check":       opDBCheck,
}

// opPing answers that a server is running (repair and restore refuse to
// run beside one).
func opPing(ctx context.Context, a *app, _ json.RawMessage, _ io.Reader) (any, error) {
	return map[string]int{"pid": os.Getpid()}, nil
}

type dbCheckResult struct {
	Accounts int `json:"accounts"`
}

// opDBCheck runs bbolt's consistency check on the open database. (A
// command with no server checks the file in a child process instead.)
func opDBCheck(ctx context.Context, a *app, _ json.RawMessage, _ io.Reader) (any, error) {
	var problems []string
	var res dbCheckResult
	err := a.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			if len(problems) < 3 {
				problems = append(problems, err.Error())
			}
		}
		return nil
	})
	if err == nil {
		var accts []account.Account
		accts, err = a.accounts.List()
		res.Accounts = len(accts)
	}
	if err == nil && len(problems) > 0 {
		err = fmt.Errorf("bbolt's consistency check failed (%s)", strings.Join(problems, "; "))
	}
	if err != nil {
		return nil, &ctl.Error{Exit: exitTempFail, Msg: fmt.Sprintf("%s is damaged (%v): %s", a.cfg.DBPath(), err, recovery)}
	}
	return res, nil
}

// call runs op on the running server if there is one, else locally. args
// is JSON-encoded either way, so that both paths decode the same bytes.
func call(ctx context.Context, cfg *config.Config, name string, args any, body io.Reader, result any) error {
	err := ctl.Call(ctx, cfg.ControlSocket(), name, args, body, result)
	if !errors.Is(err, ctl.ErrNoServer) {
		return err
	}
	a, err := openApp(cfg, slog.New(slog.DiscardHandler), 2*time.Second)
	if err != nil {
		return err
	}
	defer a.Close()
	raw, err := json.Marshal(args)
	if err != nil {
		return err
	}
	if body == nil {
		body = strings.NewReader("")
	}
	var res any
	err = guarded(cfg.DBPath(), func() (err error) {
		res, err = ops[name](ctx, a, raw, body)
		return err
	})
	if err != nil || result == nil || res == nil {
		return err
	}
	// Round-trip through JSON so the local path returns exactly what the
	// socket path would.
	out, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return json.Unmarshal(out, result)
}
