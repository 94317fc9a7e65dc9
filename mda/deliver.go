package mda

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"mailroom/mailbox"
	"mailroom/mda/alias"
)

// AddRcpt resolves a recipient and adds it to the transaction. The caller
// refuses the RCPT if it returns an error.
func (t *Txn) AddRcpt(ctx context.Context, to string) error {
	r, err := t.d.Resolve(ctx, to)
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
// the whole message (too big, unreadable, looping); then no one got it.
//
// A recipient whose targets partly failed for good (a command that
// exited 1, one of an alias's members) succeeds, and the sender gets a
// bounce for the failed pieces; one whose targets all failed for good gets
// that failure; any temporary failure makes the recipient's result
// temporary, so that the client retries it.
func (t *Txn) Deliver(ctx context.Context, r io.Reader) ([]error, error) {
	return t.deliver(ctx, r, false)
}

// DeliverAll is Deliver for callers with a single reply for all recipients
// (SMTP, `mailroom deliver`): either every mailbox gets the message or, as
// far as a crash allows, none does, so that the sender's retry does not
// duplicate what already landed. (A command or a forward that already
// ran cannot be taken back: they run after every mailbox copy is staged,
// just before the copies are committed.)
func (t *Txn) DeliverAll(ctx context.Context, r io.Reader) error {
	_, err := t.deliver(ctx, r, true)
	return err
}

// unit is one thing the message is written to: a mail home, an mbox file,
// a command, or a batch of remote addresses forwarded for one address.
type unit struct {
	leaf    alias.Leaf
	remotes []string // Remote: every address forwarded for leaf.Rcpt
	rcpts   []int    // positions in Txn.rcpts it serves
	staged  mailbox.Staged
	err     error
	// sieve is what the home's Sieve scripts left to do (sieve.go).
	sieve *sieveOutcome
}

// target names the unit in logs and bounces.
func (u *unit) target() string {
	switch u.leaf.Kind {
	case alias.Mailbox:
		return u.leaf.Home
	case alias.File:
		return u.leaf.Path
	case alias.Pipe:
		return "|" + u.leaf.Command
	case alias.Remote:
		return strings.Join(u.remotes, ",")
	}
	return u.leaf.Kind.String()
}

// plan groups the recipients' leaves into units; failed leaves and whole
// recipients that loop become failures.
type plan struct {
	units   []*unit
	failed  [][]Failure // per recipient: pieces refused by policy or looping
	rcptErr []error     // per recipient: failure of the recipient as a whole
}

// maxParallel bounds how many mail homes one message is written to at once.
const maxParallel = 8

func (t *Txn) makePlan(trace traceInfo) *plan {
	p := &plan{failed: make([][]Failure, len(t.rcpts)), rcptErr: make([]error, len(t.rcpts))}
	byKey := map[string]*unit{}
	for i, rc := range t.rcpts {
		if a := loopAddress(rc.Route, trace.deliveredTo); a != "" {
			p.rcptErr[i] = fmt.Errorf("%s: message already delivered to %s: %w", rc.Address, a, ErrLoop)
			continue
		}
		for _, l := range rc.leaves {
			if l.Err != nil {
				p.failed[i] = append(p.failed[i], Failure{Rcpt: l.Rcpt.String(), Status: status(pieceError(l.Err)), Err: l.Err})
				continue
			}
			var key string
			switch l.Kind {
			case alias.Mailbox:
				key = "m\x00" + l.Home
			case alias.File:
				key = "f\x00" + l.Path
			case alias.Pipe:
				key = "p\x00" + l.Command + "\x00" + l.Rcpt.Key()
			case alias.Remote:
				key = "r\x00" + l.Rcpt.Key()
			default:
				continue
			}
			u := byKey[key]
			if u == nil {
				u = &unit{leaf: l}
				byKey[key] = u
				p.units = append(p.units, u)
			}
			if l.Kind == alias.Remote && !containsFold(u.remotes, l.Remote.String()) {
				u.remotes = append(u.remotes, l.Remote.String())
			}
			if len(u.rcpts) == 0 || u.rcpts[len(u.rcpts)-1] != i {
				u.rcpts = append(u.rcpts, i)
			}
		}
	}
	return p
}

// loopAddress returns the first address of the expansion that forwarded
// or aliased the message and that the message was already delivered to
// (its Delivered-To: fields): a forwarding loop. Plain mailbox delivery
// is not checked, so a message that returns to a mailbox it once left
// (a bounce, a resend) is not taken for a loop.
func loopAddress(n *alias.Node, deliveredTo map[string]bool) string {
	if n == nil || len(deliveredTo) == 0 {
		return ""
	}
	if n.Kind == alias.Address && len(n.Children) > 0 && n.Via != alias.ViaAccount && deliveredTo[strings.ToLower(n.Address)] {
		return n.Address
	}
	for _, c := range n.Children {
		if a := loopAddress(c, deliveredTo); a != "" {
			return a
		}
	}
	return ""
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// status returns the RFC 3463 code of a permanent error.
func status(err error) string {
	var pe *PermanentError
	switch {
	case errors.As(err, &pe):
		return pe.Status
	case errors.Is(err, ErrNoSuchUser):
		return "5.1.1"
	case errors.Is(err, ErrLoop):
		return "5.4.6"
	}
	return "5.0.0"
}

// temporary reports whether err may go away if the delivery is retried.
func temporary(err error) bool {
	var t interface{ Temporary() bool }
	if errors.As(err, &t) {
		return t.Temporary()
	}
	return !errors.Is(err, ErrLoop) && !errors.Is(err, ErrNoSuchUser)
}

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
	trace := scanHeader(sp.withHeader(""))
	if trace.received > maxHops {
		err := fmt.Errorf("%d Received: header fields: %w", trace.received, ErrLoop)
		t.log.Info("message not accepted", "event", "rejected", "from", t.from, "err", err)
		return nil, err
	}
	p := t.makePlan(trace)
	t.logExpansion(p)
	now := t.d.opts.Now()

	var boxes, others []*unit
	for _, u := range p.units {
		if u.leaf.Kind == alias.Mailbox {
			boxes = append(boxes, u)
		} else {
			others = append(others, u)
		}
	}
	// Mailboxes first, staged but not visible; then what cannot be
	// undone (commands, files, forwards); then the mailboxes are
	// committed, or removed if the whole must fail.
	t.parallel(boxes, func(u *unit) {
		u.staged, u.err = t.stageBox(ctx, u, sp, trace, now)
		if u.err != nil {
			u.err = fmt.Errorf("deliver to %s: %w", u.leaf.Rcpt, u.err)
		}
	})
	fail := func(err error) ([]error, error) {
		t.abort(boxes, err)
		t.logResults(p.units, sp.size, now)
		return nil, err
	}
	// A mailbox copy refused for good (a Sieve reject) is bounced like
	// any failed piece; only temporary trouble fails everybody.
	if err := firstTemporary(boxes); atomic && err != nil {
		return fail(err)
	}
	// Commands first, as the likeliest to ask for a retry, then files,
	// then forwards: with one reply for everybody, a temporary failure
	// stops the rest, so that the sender's retry repeats as little as
	// possible.
	slices.SortStableFunc(others, func(a, b *unit) int { return otherRank(a) - otherRank(b) })
	for k, u := range others {
		u.err = t.deliverOther(ctx, u, sp, now)
		if atomic && u.err != nil && temporary(u.err) {
			for _, rest := range others[k+1:] {
				rest.err = fmt.Errorf("not delivered to %s because another target failed: %w", rest.target(), u.err)
			}
			return fail(u.err)
		}
	}
	// Sieve redirects, like forwards, cannot be taken back.
	if err := t.sieveRedirects(ctx, boxes, sp, now); err != nil && atomic && temporary(err) {
		return fail(err)
	}
	results := t.results(p)
	if failures, who := t.bounces(p, results, atomic); len(failures) > 0 {
		if err := t.bounce(ctx, failures, sp); err != nil {
			if atomic {
				return fail(err)
			}
			for _, i := range who {
				results[i] = err
			}
		}
	}
	// A mailbox copy serving only recipients that will be retried is
	// taken back, so that the retry does not duplicate it.
	for _, u := range boxes {
		if u.err != nil || u.staged == nil {
			continue
		}
		retried := true
		for _, i := range u.rcpts {
			retried = retried && results[i] != nil && temporary(results[i])
		}
		if retried {
			t.remove(u)
			u.err = fmt.Errorf("not delivered to %s, to be retried with the rest: %w", u.leaf.Rcpt, results[u.rcpts[0]])
		}
	}
	// Commit is not cancelled by ctx: the bytes are on disk already.
	cctx := context.WithoutCancel(ctx)
	t.parallel(boxes, func(u *unit) {
		if u.err != nil || u.staged == nil {
			return
		}
		if u.err = u.staged.Commit(cctx); u.err != nil {
			u.err = fmt.Errorf("deliver to %s: %w", u.leaf.Rcpt, u.err)
			// The sender will retry this recipient; whatever of the
			// message reached the mailbox must go.
			t.remove(u)
		}
	})
	if err := firstTemporary(boxes); atomic && err != nil {
		return fail(err)
	}
	t.sieveAfter(ctx, boxes, now)
	results = t.results(p)
	t.logResults(p.units, sp.size, now)
	if atomic {
		// One reply for everybody: a failure only if nobody got it.
		var first error
		for _, err := range results {
			if err == nil {
				return results, nil
			}
			if first == nil {
				first = err
			}
		}
		return nil, first
	}
	return results, nil
}

// otherRank orders the units that cannot be taken back.
func otherRank(u *unit) int {
	switch u.leaf.Kind {
	case alias.Pipe:
		return 0
	case alias.File:
		return 1
	}
	return 2
}

// results folds the units' outcomes into one per recipient: any
// temporary failure makes the recipient temporary (it is retried as a
// whole); otherwise one delivered piece makes it a success (the failed
// pieces are bounced); otherwise its first permanent failure.
func (t *Txn) results(p *plan) []error {
	res := make([]error, len(t.rcpts))
	for i := range t.rcpts {
		if p.rcptErr[i] != nil {
			res[i] = p.rcptErr[i]
			continue
		}
		var ok bool
		var temp, perm error
		if len(p.failed[i]) > 0 {
			perm = pieceError(p.failed[i][0].Err)
		}
		for _, u := range p.units {
			if !slices.Contains(u.rcpts, i) {
				continue
			}
			switch {
			case u.err == nil:
				ok = true
			case temporary(u.err):
				temp = cmp.Or(temp, u.err)
			default:
				perm = cmp.Or(perm, u.err)
			}
		}
		switch {
		case temp != nil:
			res[i] = temp
		case ok:
		default:
			res[i] = perm
		}
	}
	return res
}

// bounces lists the permanently failed pieces of recipients that
// nevertheless succeeded: their sender is told by a DSN, since the reply
// said 250. With one reply for everybody (atomic), that 250 also covers
// recipients that failed for good as a whole (every target refused, a
// forwarding loop) while others got the message, so they are listed too.
// It also returns the recipients concerned.
func (t *Txn) bounces(p *plan, results []error, atomic bool) ([]Failure, []int) {
	var out []Failure
	var who []int
	// An address given in two RCPTs (or reached by two) has its
	// failures listed once.
	seen := map[string]bool{}
	add := func(f Failure, cause error) {
		key := strings.ToLower(f.Rcpt) + "\x00" + f.Status + "\x00" + cause.Error()
		if !seen[key] {
			seen[key] = true
			out = append(out, f)
		}
	}
	accepted := slices.Contains(results, nil)
	for i := range t.rcpts {
		if err := results[i]; err != nil {
			if atomic && accepted && !temporary(err) {
				add(Failure{Rcpt: t.rcpts[i].Address.String(), Status: status(err), Err: shown(err)}, err)
				who = append(who, i)
			}
			continue
		}
		failed := len(p.failed[i]) > 0
		for _, f := range p.failed[i] {
			add(Failure{Rcpt: f.Rcpt, Status: f.Status, Err: shown(pieceError(f.Err))}, f.Err)
		}
		for _, u := range p.units {
			if u.err != nil && !temporary(u.err) && slices.Contains(u.rcpts, i) {
				add(Failure{Rcpt: u.leaf.Rcpt.String(), Status: status(u.err), Err: shown(u.err)}, u.err)
				failed = true
			}
		}
		if failed {
			who = append(who, i)
		}
	}
	return out, who
}

// shownError is a failure as the sender sees it in a bounce: its text
// says what failed, as the protocol reply would, without the command
// lines, paths and alias chains of the full error (which is logged);
// errors.Is and As still reach the cause.
type shownError struct {
	text string
	err  error
}

func (e *shownError) Error() string { return e.text }
func (e *shownError) Unwrap() error { return e.err }

// shown wraps a permanent failure for a bounce.
func shown(err error) error {
	var pe *PermanentError
	text := "Delivery failed"
	switch {
	case errors.Is(err, ErrLoop):
		text = "Mail forwarding loop detected"
	case errors.As(err, &pe):
		text = pe.Text
	case errors.Is(err, ErrNoSuchUser):
		text = "No such user here"
	}
	return &shownError{text: text, err: err}
}

func (t *Txn) bounce(ctx context.Context, failures []Failure, sp *spool) error {
	if t.from == "" {
		t.log.Info("no bounce for a null-sender message", "failures", len(failures))
		return nil
	}
	if t.d.opts.Forwarder == nil {
		return errors.New("bounce: no queue to send it")
	}
	if err := t.d.opts.Forwarder.Bounce(ctx, t.from, failures, sp.withHeader("")); err != nil {
		return fmt.Errorf("queue bounce: %w", err)
	}
	return nil
}

// parallel runs fn for every unit, at most maxParallel at once.
func (t *Txn) parallel(units []*unit, fn func(*unit)) {
	if len(units) == 1 {
		fn(units[0])
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxParallel)
	for _, u := range units {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(u)
		})
	}
	wg.Wait()
}

// abort removes every staged or committed mailbox copy and marks the
// units failed, so that the log tells the truth.
func (t *Txn) abort(boxes []*unit, cause error) {
	for _, u := range boxes {
		t.remove(u)
		if u.err == nil {
			u.err = fmt.Errorf("not delivered to %s because another recipient failed: %w", u.leaf.Rcpt, cause)
		}
	}
}

// remove takes a unit's copy out of its mailbox, if it has one.
func (t *Txn) remove(u *unit) {
	if u.staged == nil {
		return
	}
	if err := u.staged.Abort(); err != nil {
		t.log.Error("could not remove partial delivery", "rcpt", u.leaf.Rcpt.String(), "err", err)
	}
	u.staged = nil
}

// firstTemporary is the first temporary failure among units.
func firstTemporary(units []*unit) error {
	for _, u := range units {
		if u.err != nil && temporary(u.err) {
			return u.err
		}
	}
	return nil
}

// logExpansion logs, once per message, where aliases and .forward files
// sent each recipient; plain mailbox deliveries are in the delivery log.
func (t *Txn) logExpansion(p *plan) {
	var parts []string
	for i, rc := range t.rcpts {
		if len(rc.leaves) == 1 && rc.leaves[0].Kind == alias.Mailbox && rc.Route != nil && rc.Route.Via == alias.ViaAccount && p.rcptErr[i] == nil {
			continue
		}
		var to []string
		if p.rcptErr[i] != nil {
			to = append(to, "error: "+p.rcptErr[i].Error())
		}
		for _, l := range rc.leaves {
			s := l.Kind.String() + ":"
			switch l.Kind {
			case alias.Mailbox:
				s += l.Home
			case alias.File:
				s += l.Path
			case alias.Pipe:
				s += l.Command
			case alias.Remote:
				s += l.Remote.String()
			}
			if l.Err != nil {
				s += " (refused: " + l.Err.Error() + ")"
			}
			to = append(to, s)
		}
		parts = append(parts, rc.Address.String()+" -> "+strings.Join(to, ", "))
	}
	if len(parts) > 0 {
		t.log.Info("expanded", "from", t.from, "expansion", parts)
	}
}

// logResults logs each recipient's outcome; delay is the time since the
// whole message was received (since), as Postfix's delay= is since arrival.
func (t *Txn) logResults(units []*unit, size int64, since time.Time) {
	delay := t.d.opts.Now().Sub(since)
	for _, u := range units {
		for _, i := range u.rcpts {
			rcpt := t.rcpts[i].Address.String()
			if u.err != nil {
				event := "deferred"
				if !temporary(u.err) {
					event = "bounced"
				}
				t.log.Info("delivery failed", "event", event, "from", t.from, "rcpt", rcpt,
					"kind", u.leaf.Kind.String(), "target", u.target(), "proto", t.info.Proto, "size", size, "delay", delay, "err", u.err)
				continue
			}
			t.log.Info("delivered", "event", "delivered", "from", t.from, "rcpt", rcpt,
				"kind", u.leaf.Kind.String(), "target", u.target(), "proto", t.info.Proto, "size", size, "delay", delay)
		}
	}
}

// traceHeaders returns the lines mailroom adds at the top of a delivered
// copy, with LF endings like the stored body, in Postfix local(8)'s order.
func (t *Txn) traceHeaders(u *unit, now time.Time) string {
	orig := t.rcpts[u.rcpts[0]].Address
	var b strings.Builder
	// RFC 5322 §3.6.7 / RFC 5321 §4.4: Return-Path records the envelope
	// sender at final delivery; <> for the null sender.
	fmt.Fprintf(&b, "Return-Path: <%s>\n", t.from)
	// X-Original-To: the address as received, before aliasing (Postfix).
	fmt.Fprintf(&b, "X-Original-To: %s\n", orig)
	// Delivered-To, as Postfix's local(8) writes it: the address the
	// message was delivered for, used later for loop detection.
	fmt.Fprintf(&b, "Delivered-To: %s\n", u.leaf.Rcpt)
	b.WriteString(ReceivedHeader(t.info, t.d.opts.Hostname, t.id, orig.String(), now))
	return b.String()
}

// Quarantine makes the transaction's mailbox copies go to each account's
// \Junk folder instead of INBOX: the message is kept, but out of the
// user's way (a DMARC p=quarantine failure, a milter's quarantine).
// Forwards, files and commands are delivered as usual: the user chose to
// get all mail there. With a Store that has no special-use folders the
// copies go to INBOX.
func (t *Txn) Quarantine(reason string) {
	t.junk = true
	t.log.Info("quarantined: mailbox copies go to the Junk folder", "event", "quarantined", "reason", reason)
}

// stage writes a mailbox copy, into \Junk when quarantined.
func (t *Txn) stage(ctx context.Context, home string, r io.Reader) (mailbox.Staged, error) {
	if t.junk {
		if ss, ok := t.d.opts.Store.(SpecialStore); ok {
			return ss.StageSpecial(ctx, home, `\Junk`, r)
		}
	}
	return t.d.opts.Store.Stage(ctx, home, r)
}
