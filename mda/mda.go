// Package mda decides where mail goes and puts it there. Every entry point
// (LMTP, SMTP, `mailroom deliver`) hands it an envelope and a message; mda
// resolves each recipient to a mail home (recipient_delimiter, accounts),
// adds the trace headers (Return-Path, Delivered-To, Received) and delivers
// through a Store. It knows nothing of sockets or of how a Store keeps files.
//
// The shape follows maddy's delivery interface: Begin a transaction, AddRcpt
// (which resolves at once, so an unknown user is refused at RCPT time and
// never bounced later), then Deliver with one result per recipient, or
// DeliverAll when the caller can only report one result for everybody.
package mda

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"mailroom/account"
	"mailroom/internal/address"
	"mailroom/mailbox"
)

// Errors that are the sender's fault and permanent; every other delivery
// error is temporary (the caller answers 4xx or exits 75).
var (
	ErrNoSuchUser = errors.New("no such user")
	ErrNotLocal   = errors.New("domain is not local")
	ErrBadAddress = errors.New("bad address")
	ErrBadSender  = errors.New("bad sender address")
	ErrTooBig     = errors.New("message exceeds the size limit")
	ErrNoRcpt     = errors.New("no valid recipients")
	// ErrLoop is a forwarding loop (RFC 3463 5.4.6): the message already
	// carries Delivered-To: for an address being expanded, has been
	// through more than 100 hosts, or an alias chain is too deep.
	ErrLoop = errors.New("mail forwarding loop")
)

// PermanentError is a delivery piece that failed for good (a command that
// exited 1, a refused file target): the sender is told, with Text, which
// is safe to show them.
type PermanentError struct {
	Status string // RFC 3463 code, "5.3.0"
	Text   string // one line for the reply or the bounce
	Err    error
}

func (e *PermanentError) Error() string {
	if e.Err != nil {
		return e.Text + ": " + e.Err.Error()
	}
	return e.Text
}

func (e *PermanentError) Unwrap() error { return e.Err }

// Temporary reports false: retrying cannot help.
func (e *PermanentError) Temporary() bool { return false }

// Accounts is what mda needs of the account store.
type Accounts interface {
	Lookup(addr address.Address) (account.Account, error)
}

// Store writes a message into a mail home in two steps (see
// mailbox.Staged). maildir.Store implements it.
type Store interface {
	Stage(ctx context.Context, home string, r io.Reader) (mailbox.Staged, error)
}

// Options configure a Deliverer.
type Options struct {
	Hostname  string   // names this host in Received:
	Domains   []string // local domains
	Delimiter string   // recipient_delimiter; "" disables extensions
	Accounts  Accounts
	Store     Store
	// SpoolDir holds messages too large to keep in memory while they are
	// delivered. It must be on a local disk; files there are unlinked at
	// once and never outlive a transaction.
	SpoolDir string
	// MaxMessageBytes refuses larger messages with ErrTooBig (0: no limit).
	MaxMessageBytes int64
	Logger          *slog.Logger
	// Now is time.Now unless a test fixes the clock.
	Now func() time.Time
}

// Deliverer resolves and delivers messages. It is safe for concurrent use
// and holds no lock across deliveries: each transaction works alone, and
// deliveries to different mail homes never wait for each other.
type Deliverer struct {
	opts    Options
	domains []string
	log     *slog.Logger
}

// New returns a Deliverer.
func New(opts Options) (*Deliverer, error) {
	var domains []string
	for _, d := range opts.Domains {
		nd, err := address.NormalizeDomain(d)
		if err != nil {
			return nil, fmt.Errorf("domain %q: %w", d, err)
		}
		domains = append(domains, nd)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Deliverer{opts: opts, domains: domains, log: opts.Logger}, nil
}

// Info describes where a message came from, for the Received: header and
// the log.
type Info struct {
	Proto      string // "LMTP", "ESMTP", "ESMTPS", "ESMTPSA" (RFC 3848), "local"
	Helo       string // HELO/LHLO argument, if any
	RemoteAddr string // "[192.0.2.1]", "unix socket", or "" for local
	TLS        string // e.g. "TLS1.3 with cipher TLS_AES_128_GCM_SHA256", if any
	// Internal marks a message mailroom has already accepted (the queue
	// delivering a local copy): the size limit was applied then, and the
	// headers added since must not push it over and bounce it.
	Internal bool
}

// Recipient is a resolved recipient.
type Recipient struct {
	// Address is the address as given in RCPT TO, used in Delivered-To.
	Address address.Address
	// Account is the account it resolved to.
	Account account.Account
}

// Resolve maps an address to a local account: it checks the domain, strips
// a recipient_delimiter extension, and looks the account up. It is the one
// code path for RCPT, `mailroom deliver` and `mailroom route`.
func (d *Deliverer) Resolve(addr string) (Recipient, error) {
	a, err := address.Parse(addr)
	if err != nil {
		return Recipient{}, fmt.Errorf("%w: %w", ErrBadAddress, err)
	}
	if !slices.Contains(d.domains, a.Domain) {
		return Recipient{}, fmt.Errorf("%s: %w", a, ErrNotLocal)
	}
	lookup := a
	acct, err := d.opts.Accounts.Lookup(lookup)
	if errors.Is(err, account.ErrNotFound) {
		if base, ext := address.StripExtension(a.Local, d.opts.Delimiter); ext != "" || base != a.Local {
			lookup.Local = base
			acct, err = d.opts.Accounts.Lookup(lookup)
		}
	}
	switch {
	case errors.Is(err, account.ErrNotFound):
		return Recipient{}, fmt.Errorf("%s: %w", a, ErrNoSuchUser)
	case err != nil:
		return Recipient{}, fmt.Errorf("look up %s: %w", a, err)
	}
	return Recipient{Address: a, Account: acct}, nil
}

// Txn is one message transaction. It is not safe for concurrent use; a
// protocol session owns it.
type Txn struct {
	d     *Deliverer
	id    string
	from  string
	info  Info
	rcpts []Recipient
	log   *slog.Logger
}

// Begin starts a transaction for the envelope sender from ("" for the null
// sender <>).
func (d *Deliverer) Begin(ctx context.Context, from string, info Info) (*Txn, error) {
	if from != "" {
		if err := address.CheckSender(from); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadSender, err)
		}
	}
	id := newID()
	return &Txn{d: d, id: id, from: from, info: info, log: d.log.With("queue_id", id)}, nil
}

// ID is the transaction's queue id, as shown in Received: and the log.
func (t *Txn) ID() string { return t.id }

// AddRcpt resolves a recipient and adds it to the transaction. The caller
// refuses the RCPT if it returns an error.
func (t *Txn) AddRcpt(ctx context.Context, to string) error {
	r, err := t.d.Resolve(to)
	if err != nil {
		t.log.Debug("recipient refused", "rcpt", to, "err", err)
		return err
	}
	t.rcpts = append(t.rcpts, r)
	return nil
}

// Abort ends the transaction without delivering.
//
// A Txn holds no resources until Deliver, which releases its own, so
// there is nothing to undo; Abort exists so that callers say what they
// mean, and must not touch state that a Deliver running in another
// goroutine (go-smtp runs BDAT's in one) may be reading.
func (t *Txn) Abort() {}

// Deliver reads the message from r and delivers it to every recipient
// independently. It returns one error (nil for success) per AddRcpt call, in
// order; a recipient given twice (or two addresses of one mailbox) gets one
// copy and the same result. The error return is for failures that concern
// the whole message (too big, unreadable); then no one got it.
func (t *Txn) Deliver(ctx context.Context, r io.Reader) ([]error, error) {
	return t.deliver(ctx, r, false)
}

// DeliverAll is Deliver for callers with a single reply for all recipients
// (SMTP, `mailroom deliver`): either every mailbox gets the message or, as
// far as a crash allows, none does, so that the sender's retry does not
// duplicate what already landed.
func (t *Txn) DeliverAll(ctx context.Context, r io.Reader) error {
	_, err := t.deliver(ctx, r, true)
	return err
}

// target is one mail home the message goes to, with the recipients that
// resolved to it.
type target struct {
	home   string
	rcpt   Recipient // the first recipient, named in the headers
	idx    []int     // positions in Txn.rcpts
	staged mailbox.Staged
	err    error
}

// maxParallel bounds how many mail homes one message is written to at once.
const maxParallel = 8

func (t *Txn) deliver(ctx context.Context, r io.Reader, atomic bool) ([]error, error) {
	if len(t.rcpts) == 0 {
		return nil, ErrNoRcpt
	}
	sp := &spool{dir: t.d.opts.SpoolDir, max: t.d.opts.MaxMessageBytes}
	if t.info.Internal {
		sp.max = 0
	}
	defer sp.close()
	if err := sp.fill(r); err != nil {
		event := "deferred"
		if errors.Is(err, ErrTooBig) {
			event = "rejected"
		}
		t.log.Info("message not accepted", "event", event, "from", t.from, "err", err)
		return nil, err
	}

	var targets []*target
	byHome := map[string]*target{}
	for i, rc := range t.rcpts {
		home := rc.Account.Home()
		tg := byHome[home]
		if tg == nil {
			tg = &target{home: home, rcpt: rc}
			byHome[home] = tg
			targets = append(targets, tg)
		}
		tg.idx = append(tg.idx, i)
	}

	now := t.d.opts.Now()
	t.parallel(targets, func(tg *target) {
		tg.staged, tg.err = t.d.opts.Store.Stage(ctx, tg.home, sp.withHeader(t.traceHeaders(tg.rcpt, now)))
		if tg.err != nil {
			tg.err = fmt.Errorf("deliver to %s: %w", tg.rcpt.Address, tg.err)
		}
	})
	if err := firstErr(targets); atomic && err != nil {
		t.abort(targets, err)
		t.logResults(targets, sp.size)
		return nil, err
	}
	// Commit is not cancelled by ctx: the bytes are on disk already.
	cctx := context.WithoutCancel(ctx)
	t.parallel(targets, func(tg *target) {
		if tg.err != nil {
			return
		}
		if tg.err = tg.staged.Commit(cctx); tg.err != nil {
			tg.err = fmt.Errorf("deliver to %s: %w", tg.rcpt.Address, tg.err)
			// The sender will retry this recipient; whatever of the
			// message reached the mailbox must go.
			t.remove(tg)
		}
	})
	if err := firstErr(targets); atomic && err != nil {
		t.abort(targets, err)
		t.logResults(targets, sp.size)
		return nil, err
	}
	t.logResults(targets, sp.size)
	results := make([]error, len(t.rcpts))
	for _, tg := range targets {
		for _, i := range tg.idx {
			results[i] = tg.err
		}
	}
	return results, nil
}

// parallel runs fn for every target, at most maxParallel at once.
func (t *Txn) parallel(targets []*target, fn func(*target)) {
	if len(targets) == 1 {
		fn(targets[0])
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxParallel)
	for _, tg := range targets {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(tg)
		})
	}
	wg.Wait()
}

// abort removes every staged or committed copy and marks the targets
// failed, so that the log tells the truth.
func (t *Txn) abort(targets []*target, cause error) {
	for _, tg := range targets {
		t.remove(tg)
		if tg.err == nil {
			tg.err = fmt.Errorf("not delivered to %s because another recipient failed: %w", tg.rcpt.Address, cause)
		}
	}
}

// remove takes a target's copy out of its mailbox, if it has one.
func (t *Txn) remove(tg *target) {
	if tg.staged == nil {
		return
	}
	if err := tg.staged.Abort(); err != nil {
		t.log.Error("could not remove partial delivery", "rcpt", tg.rcpt.Address.String(), "err", err)
	}
	tg.staged = nil
}

func firstErr(targets []*target) error {
	for _, tg := range targets {
		if tg.err != nil {
			return tg.err
		}
	}
	return nil
}

func (t *Txn) logResults(targets []*target, size int64) {
	for _, tg := range targets {
		for _, i := range tg.idx {
			rcpt := t.rcpts[i].Address.String()
			if tg.err != nil {
				t.log.Info("delivery failed", "event", "deferred", "from", t.from, "rcpt", rcpt,
					"proto", t.info.Proto, "size", size, "err", tg.err)
				continue
			}
			t.log.Info("delivered", "event", "delivered", "from", t.from, "rcpt", rcpt,
				"mailbox", tg.home, "proto", t.info.Proto, "size", size)
		}
	}
}

// traceHeaders returns the lines mailroom adds at the top of the stored
// message, with LF endings like the stored body.
func (t *Txn) traceHeaders(r Recipient, now time.Time) string {
	var b strings.Builder
	// RFC 5322 §3.6.7 / RFC 5321 §4.4: Return-Path records the envelope
	// sender at final delivery; <> for the null sender.
	fmt.Fprintf(&b, "Return-Path: <%s>\n", t.from)
	// Delivered-To, as Postfix's local(8) writes it: the address the
	// message was delivered for, used later for loop detection.
	fmt.Fprintf(&b, "Delivered-To: %s\n", r.Address)
	b.WriteString(ReceivedHeader(t.info, t.d.opts.Hostname, t.id, r.Address.String(), now))
	return b.String()
}

// ReceivedHeader is the RFC 5321 §4.4 time stamp line for a message
// received as info describes, ending in LF. rcpt may be "" (the "for"
// clause names one recipient only, and none for several).
func ReceivedHeader(info Info, hostname, id, rcpt string, now time.Time) string {
	var b strings.Builder
	b.WriteString("Received: ")
	if info.Helo != "" || info.RemoteAddr != "" {
		b.WriteString("from ")
		b.WriteString(headerSafe(orDefault(info.Helo, "unknown")))
		if info.RemoteAddr != "" {
			fmt.Fprintf(&b, " (%s)", headerSafe(info.RemoteAddr))
		}
		b.WriteString("\n\t")
	}
	fmt.Fprintf(&b, "by %s (mailroom) with %s", hostname, orDefault(info.Proto, "local"))
	if info.TLS != "" {
		fmt.Fprintf(&b, " (%s)", headerSafe(info.TLS))
	}
	fmt.Fprintf(&b, " id %s", id)
	if rcpt != "" {
		fmt.Fprintf(&b, "\n\tfor <%s>", rcpt)
	}
	fmt.Fprintf(&b, "; %s\n", now.Format(time.RFC1123Z))
	return b.String()
}

// headerSafe keeps client-supplied text from breaking the header: no line
// breaks, no control characters, no unbalanced comment parentheses.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '(' || r == ')' {
			return '?'
		}
		return r
	}, s)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

var idEncoding = base32.NewEncoding("0123456789ABCDEFGHJKLMNPQRSTVWXY").WithPadding(base32.NoPadding)

// newID returns a short random queue id.
func newID() string {
	var b [10]byte
	rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}
