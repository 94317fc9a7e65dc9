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
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"

	"time"

	"mailroom/account"
	"mailroom/internal/address"
	"mailroom/internal/srs"
	"mailroom/mailbox"
	"mailroom/mda/alias"
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
	// through more than 100 hosts, or an alias chain is too deep or
	// circular. It is alias.ErrLoop, so errors.Is works on either.
	ErrLoop = alias.ErrLoop
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
	if e.Err != nil && e.Err.Error() != e.Text {
		return e.Text + ": " + e.Err.Error()
	}
	return e.Text
}

func (e *PermanentError) Unwrap() error { return e.Err }

// Temporary reports false: retrying cannot help.
func (e *PermanentError) Temporary() bool { return false }

// Accounts is what mda needs of the account store.
type Accounts interface {
	Lookup(ctx context.Context, addr address.Address) (account.Account, error)
}

// Store writes a message into a mail home in two steps (see
// mailbox.Staged). maildir.Store implements it.
type Store interface {
	Stage(ctx context.Context, home string, r io.Reader) (mailbox.Staged, error)
}

// SpecialStore is a Store that can also deliver into a mail home's
// folder of a special use (RFC 6154), such as \Junk for quarantined mail.
// maildir.Store implements it.
type SpecialStore interface {
	StageSpecial(ctx context.Context, home, use string, r io.Reader) (mailbox.Staged, error)
}

// Forwarder takes what local delivery cannot finish here: copies for
// remote addresses (aliases and .forward naming them), and bounces for
// pieces that failed for good. Both must be durable when they return.
// queue.Queue implements it (through a small adapter for Bounce).
type Forwarder interface {
	Enqueue(ctx context.Context, from string, to []string, r io.Reader) (string, error)
	Bounce(ctx context.Context, from string, failures []Failure, r io.Reader) error
}

// Failure is one piece of a delivery that failed for good after the
// message was accepted for other pieces; the sender gets a DSN about it.
type Failure struct {
	Rcpt   string // the address whose piece failed
	Status string // RFC 3463, "5.3.0"
	Err    error
}

// Options configure a Deliverer.
type Options struct {
	Hostname  string   // names this host in Received:
	Domains   []string // local domains
	Delimiter string   // recipient_delimiter; "" disables extensions
	Accounts  Accounts
	Store     Store
	// MailRoot is the directory mail homes are relative to; .forward
	// files are read from <MailRoot>/<home>/.forward.
	MailRoot string
	// Aliases is the aliases file; nil means none. Deliverer.SetAliases
	// replaces it (SIGHUP); Deliverer also reloads it when it changes.
	Aliases *alias.Table
	// ForwardFiles honours .forward files.
	ForwardFiles bool
	// AllowCommands and AllowFiles allow |command and /file targets in
	// .forward and :include: files (the aliases file's are always allowed).
	AllowCommands, AllowFiles bool
	// CommandTimeout bounds a |command delivery (default 10 minutes).
	CommandTimeout time.Duration
	// CommandCredential, if set, is the user commands run as: when
	// mailroom runs as root, nobody, as Postfix's default_privs, so that
	// neither a .forward nor an alias pipe gets root's rights.
	CommandCredential *syscall.Credential
	// Forwarder receives remote targets and bounces; nil makes both a
	// temporary failure.
	Forwarder Forwarder
	// SRS, if set, rewrites the sender of forwarded mail and reverses
	// SRS addresses that bounces arrive at.
	SRS *srs.SRS
	// Sieve, if its Scripts are set, filters deliveries into mail homes
	// with their Sieve scripts (sieve.go).
	Sieve SieveOptions
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
	opts Options
	// domains is replaced whole by SetDomains (a SIGHUP) while
	// deliveries read it.
	domains atomic.Pointer[[]string]
	log     *slog.Logger
	aliases *aliasFile
}

// New returns a Deliverer.
func New(opts Options) (*Deliverer, error) {
	domains, err := normalizeDomains(opts.Domains)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = 10 * time.Minute
	}
	d := &Deliverer{opts: opts, log: opts.Logger}
	d.domains.Store(&domains)
	d.aliases = newAliasFile(opts.Aliases, d.log)
	return d, nil
}

// SetAliases puts a newly loaded aliases table in force (SIGHUP).
func (d *Deliverer) SetAliases(t *alias.Table) { d.aliases.set(t) }

// Info describes where a message came from, for the Received: header and
// the log.
type Info struct {
	Proto      string // "LMTP", "ESMTP", "ESMTPS", "ESMTPSA" (RFC 3848), "local"
	Helo       string // HELO/LHLO argument, if any
	RemoteAddr string // "[192.0.2.1]", "unix socket", or "" for local
	TLS        string // e.g. "TLS1.3 with cipher TLS_AES_128_GCM_SHA256", if any
	// Internal marks a message whose size mailroom has already limited:
	// the queue delivering a local copy, or the SMTP server that applied
	// the limit to what the client sent and added fields since
	// (Authentication-Results, a milter's, a DKIM signature). Those
	// fields must not push it over and bounce it.
	Internal bool
}

// Recipient is a resolved recipient: the address as given and the tree
// of targets it expands to.
type Recipient struct {
	// Address is the address as given in RCPT TO (X-Original-To).
	Address address.Address
	// Route is its expansion through aliases and .forward files, as
	// `mailroom route` prints it.
	Route  *alias.Node
	leaves []alias.Leaf
}

// Resolve maps an address to where it is delivered: it checks the domain,
// reverses an SRS address, and expands aliases, .forward files and
// recipient_delimiter extensions down to mailboxes, files, commands and
// remote addresses. It is the one code path for RCPT, `mailroom deliver`
// and `mailroom route`. It refuses an address none of whose targets can
// be delivered (ErrNoSuchUser, ErrLoop, a PermanentError).
func (d *Deliverer) Resolve(ctx context.Context, addr string) (Recipient, error) {
	rc, err := d.Route(ctx, addr)
	if err != nil {
		return rc, err
	}
	var first error
	for _, l := range rc.leaves {
		if l.Err == nil {
			return rc, nil
		}
		if first == nil {
			first = l.Err
		}
	}
	if first == nil {
		first = rc.Route.Err
	}
	return rc, pieceError(fmt.Errorf("%s: %w", rc.Address, first))
}

// Route is Resolve without the final verdict: it returns the expansion
// even when nothing in it can be delivered, for `mailroom route`. The
// error is for addresses that have no expansion at all (bad syntax, not
// local, a forged SRS address) and for temporary trouble.
func (d *Deliverer) Route(ctx context.Context, addr string) (Recipient, error) {
	if d.opts.SRS != nil && srs.IsSRS(addr) {
		// Before address.Parse: SRS local parts are often longer than
		// the 64 octets RFC 5321 allows, and must still come back.
		rc, err := d.reverseSRS(addr)
		if !errors.Is(err, srs.ErrNotSRS) {
			return rc, err
		}
	}
	if domains := *d.domains.Load(); strings.EqualFold(addr, "postmaster") && len(domains) > 0 {
		// RFC 5321 §4.5.1: "postmaster" without a domain must be
		// accepted; it is the postmaster of the first local domain.
		addr = "postmaster@" + domains[0]
	}
	a, err := address.Parse(addr)
	if err != nil {
		return Recipient{}, fmt.Errorf("%w: %w", ErrBadAddress, err)
	}
	if !d.IsLocalDomain(a.Domain) {
		return Recipient{}, fmt.Errorf("%s: %w", a, ErrNotLocal)
	}
	tree, err := alias.Expand(ctx, d.aliases.current(), a, resolver{d}, alias.Options{
		Delimiter:            d.opts.Delimiter,
		AllowForwardCommands: d.opts.AllowCommands,
		AllowForwardFiles:    d.opts.AllowFiles,
		AllowIncludeCommands: d.opts.AllowCommands,
		AllowIncludeFiles:    d.opts.AllowFiles,
		ReadInclude:          openInclude,
	})
	if err != nil {
		return Recipient{}, fmt.Errorf("expand %s: %w", a, err)
	}
	d.confineFiles(tree)
	return Recipient{Address: a, Route: tree, leaves: tree.Leaves()}, nil
}

// reverseSRS routes a bounce that arrives at an SRS address back to the
// original sender.
func (d *Deliverer) reverseSRS(addr string) (Recipient, error) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return Recipient{}, srs.ErrNotSRS
	}
	domain, err := address.NormalizeDomain(addr[at+1:])
	if err != nil || !d.IsLocalDomain(domain) {
		return Recipient{}, srs.ErrNotSRS // not ours: the normal checks say why
	}
	a := address.Address{Local: addr[:at], Domain: domain}
	orig, err := d.opts.SRS.Reverse(addr)
	if errors.Is(err, srs.ErrNotSRS) {
		return Recipient{}, err
	}
	if err != nil {
		return Recipient{}, fmt.Errorf("%s: %w: %w", a, ErrNoSuchUser, err)
	}
	oa, err := address.Parse(orig)
	if err != nil {
		return Recipient{}, fmt.Errorf("%s: reversed to %q: %w: %w", a, orig, ErrNoSuchUser, err)
	}
	leaf := &alias.Leaf{Kind: alias.Remote, Rcpt: a, Remote: oa}
	tree := &alias.Node{Address: a.String(), Kind: alias.Address, Via: alias.ViaSRS, Children: []*alias.Node{
		{Address: oa.String(), Kind: alias.Remote, Via: alias.ViaRemote, Leaf: leaf},
	}}
	return Recipient{Address: a, Route: tree, leaves: []alias.Leaf{*leaf}}, nil
}

// pieceError gives a failed piece of an expansion the error that maps to
// its reply: 5.1.1, 5.4.6, or a PermanentError.
func pieceError(err error) error {
	switch {
	case errors.Is(err, alias.ErrNoSuchUser):
		return fmt.Errorf("%w: %w", ErrNoSuchUser, err)
	case errors.Is(err, alias.ErrLoop):
		return err
	case errors.Is(err, alias.ErrNotAllowed):
		return &PermanentError{Status: "5.7.1", Text: "Delivery to this target is not allowed here", Err: err}
	default:
		return &PermanentError{Status: "5.3.0", Text: "Delivery failed", Err: err}
	}
}

// resolver is the alias.Resolver over the Deliverer's domains, accounts
// and mail homes.
type resolver struct{ d *Deliverer }

func (r resolver) IsLocalDomain(domain string) bool { return r.d.IsLocalDomain(domain) }

// IsLocalDomain reports whether mail for domain (normalized, as
// address.NormalizeDomain gives it) is delivered here.
func (d *Deliverer) IsLocalDomain(domain string) bool {
	return slices.Contains(*d.domains.Load(), domain)
}

// SetDomains replaces the local domains (serve does on SIGHUP): from the
// next recipient on, mail for the new ones is delivered here and mail for
// those no longer listed is not.
func (d *Deliverer) SetDomains(list []string) error {
	domains, err := normalizeDomains(list)
	if err != nil {
		return err
	}
	d.domains.Store(&domains)
	return nil
}

func normalizeDomains(list []string) ([]string, error) {
	var domains []string
	for _, d := range list {
		nd, err := address.NormalizeDomain(d)
		if err != nil {
			return nil, fmt.Errorf("domain %q: %w", d, err)
		}
		domains = append(domains, nd)
	}
	return domains, nil
}

func (r resolver) Account(ctx context.Context, a address.Address) (string, bool, error) {
	acct, err := r.d.opts.Accounts.Lookup(ctx, a)
	switch {
	case errors.Is(err, account.ErrNotFound):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("look up %s: %w", a, err)
	}
	return acct.Home(), true, nil
}

func (r resolver) Forward(ctx context.Context, home string) ([]alias.Target, error) {
	if !r.d.opts.ForwardFiles || r.d.opts.MailRoot == "" {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, path, err := readForward(r.d.opts.MailRoot, home)
	if errors.Is(err, errIgnoredForward) {
		r.d.log.Warn("ignoring .forward", "file", path, "err", err)
		return nil, nil
	}
	if err != nil || b == nil {
		return nil, err
	}
	targets, err := alias.ParseForward(bytes.NewReader(b), path)
	if err != nil {
		// A broken .forward must not lose mail: the user gets normal
		// delivery, and the administrator the line to fix.
		r.d.log.Warn("ignoring .forward with errors", "file", path, "err", err)
		return nil, nil
	}
	return targets, nil
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
	// junk sends the mailbox copies to \Junk (Quarantine).
	junk bool
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

// Homes lists the mail homes the recipient's mail goes to, for tests and
// callers that only care about mailboxes.
func (r Recipient) Homes() []string {
	var out []string
	for _, l := range r.leaves {
		if l.Kind == alias.Mailbox && l.Err == nil {
			out = append(out, l.Home)
		}
	}
	return out
}
