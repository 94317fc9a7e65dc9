package mda

// Sieve (RFC 5228) at final delivery into a mail home: after aliases and
// .forward files have chosen the mailbox, the home's scripts (the
// administrator's before and after scripts around the user's active one)
// decide which folders get the message, whether it is redirected,
// refused or answered. The language is package sieve; this file carries
// its decisions out. A script that fails, or a folder that cannot be
// used, ends in the implicit keep into INBOX: no message is lost.

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"mailroom/internal/address"
	"mailroom/mailbox"
	"mailroom/mda/alias"
	"mailroom/sieve"
)

// SieveScripts gives the scripts to run for a delivery into a mail home.
// sievestore.Store implements it.
type SieveScripts interface {
	// Sequence returns the scripts in the order they run (before, the
	// user's, after), none for a home without scripts. A script that
	// cannot be compiled is left out and reported as err (a
	// *sieve.Error), with the others still returned.
	Sequence(ctx context.Context, home string) ([]*sieve.Script, error)
}

// SieveMemory remembers what scripts must know across deliveries: the
// vacation replies sent and the duplicate ids seen (kinds "v" and "d").
// sievestore.Memory implements it.
type SieveMemory interface {
	Seen(ctx context.Context, home, kind, key string) (bool, error)
	Remember(ctx context.Context, home, kind string, keys map[string]time.Duration) error
}

// Signer returns header fields (DKIM-Signature) to put before a message
// that mailroom writes itself: vacation replies. mailauth/dkim
// implements it.
type Signer interface {
	Sign(msg io.Reader) (string, error)
}

// FolderStore is a Store that delivers into named folders with flags
// (fileinto, RFC 5228 §4.1) and says which folders exist (mailboxexists,
// RFC 5490). maildir.Store implements it.
type FolderStore interface {
	StageFolder(ctx context.Context, home string, d mailbox.Delivery, r io.Reader) (mailbox.Staged, error)
	FolderExists(ctx context.Context, home, name string) (bool, error)
}

// SieveOptions turn on Sieve filtering at final delivery.
type SieveOptions struct {
	Scripts SieveScripts
	Memory  SieveMemory
	// Signer, if set, signs vacation replies.
	Signer Signer
}

// sieveOutcome is what a unit's scripts decided that happens after the
// mailbox copies are staged: redirects before the commit, the vacation
// reply and the duplicate ids after it.
type sieveOutcome struct {
	msg       *sieve.Message
	redirects []string
	vacation  *sieve.Vacation
	dups      []sieve.DuplicateMark
}

// sieveEnv answers a script's questions about the mail home.
type sieveEnv struct {
	t    *Txn
	home string
}

// MailboxExists asks the store whether home has the folder.
func (e sieveEnv) MailboxExists(ctx context.Context, name string) (bool, error) {
	fs, ok := e.t.d.opts.Store.(FolderStore)
	if !ok {
		return strings.EqualFold(name, "INBOX"), nil
	}
	return fs.FolderExists(ctx, e.home, name)
}

// Duplicate asks the memory whether the id was seen in home.
func (e sieveEnv) Duplicate(ctx context.Context, key string) (bool, error) {
	m := e.t.d.opts.Sieve.Memory
	if m == nil {
		return false, nil
	}
	return m.Seen(ctx, e.home, "d", key)
}

// multiStaged is several copies of one message in one mail home (a
// keep and fileintos): they are committed or taken back together.
type multiStaged []mailbox.Staged

func (m multiStaged) Commit(ctx context.Context) error {
	for _, s := range m {
		if err := s.Commit(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (m multiStaged) Abort() error {
	var first error
	for _, s := range m {
		if err := s.Abort(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// stageBox writes a mailbox unit's copies: as the home's Sieve scripts
// decide, or into INBOX (Junk when quarantined) when it has none.
func (t *Txn) stageBox(ctx context.Context, u *unit, sp *spool, trace traceInfo, now time.Time) (mailbox.Staged, error) {
	home := u.leaf.Home
	// The trace fields are the same for every copy and every read of
	// the header by the scripts: built once.
	hdr := t.traceHeaders(u, now)
	open := func() io.Reader { return sp.withHeader(hdr) }
	so := t.d.opts.Sieve
	if so.Scripts == nil || t.junk {
		return t.stage(ctx, home, open())
	}
	scripts, err := so.Scripts.Sequence(ctx, home)
	log := t.log.With("rcpt", u.leaf.Rcpt.String(), "home", home)
	if err != nil {
		if !logScriptError(log, "sieve script not compiled; its rules are skipped", err) {
			return nil, fmt.Errorf("load the sieve scripts of %s: %w", home, err)
		}
	}
	if len(scripts) == 0 {
		return t.stage(ctx, home, open())
	}
	msg, err := sieve.ReadMessage(open, int64(len(hdr))+sp.size)
	if err != nil {
		return nil, err
	}
	res, err := sieve.RunSequence(ctx, scripts, msg, sieve.RunOptions{
		Envelope: sieve.Envelope{From: t.from, To: u.leaf.Rcpt.String()},
		Env:      sieveEnv{t, home},
		Now:      now,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("run the sieve scripts of %s: %w", home, ctx.Err())
		}
		logScriptError(log, "sieve script failed; the message is kept in INBOX", err)
	}
	out := &sieveOutcome{msg: msg, dups: res.Duplicates}
	actions := res.Actions
	if trace.deliveredTo[strings.ToLower(u.leaf.Rcpt.String())] && hasRedirect(actions) {
		// The message was delivered for this address before and came
		// back: redirecting it again would loop (RFC 5228 §4.2).
		log.Warn("sieve redirect not done: the message already has Delivered-To for this address (a loop); it is kept", "event", "sieve_loop")
		actions = keepInstead(actions)
	}
	var staged multiStaged
	fail := func(err error) (mailbox.Staged, error) {
		staged.Abort()
		return nil, err
	}
	var kept bool
	var summary []string
	for _, a := range actions {
		switch x := a.(type) {
		case sieve.Keep:
			st, err := t.stageFolder(ctx, home, mailbox.Delivery{Flags: x.Flags}, open())
			if err != nil {
				return fail(err)
			}
			staged, kept = append(staged, st), true
			summary = append(summary, "keep")
		case sieve.FileInto:
			st, err := t.stageFolder(ctx, home, mailbox.Delivery{Folder: x.Mailbox, Create: x.Create, Flags: x.Flags}, open())
			unusable := errors.Is(err, mailbox.ErrNoFolder) || errors.Is(err, mailbox.ErrBadFolderName) || (err != nil && !temporary(err))
			if unusable {
				// RFC 5228 §4.1 leaves a fileinto that cannot be done to
				// the implementation: the message goes to INBOX.
				log.Warn("sieve fileinto failed; the message is kept in INBOX instead", "event", "sieve_fileinto_failed", "folder", x.Mailbox,
					"script", x.At.Script, "line", x.At.Pos.Line, "col", x.At.Pos.Col, "err", err)
				if !kept {
					if st, err = t.stageFolder(ctx, home, mailbox.Delivery{Flags: x.Flags}, open()); err != nil {
						return fail(err)
					}
					staged, kept = append(staged, st), true
				}
				continue
			}
			if err != nil {
				return fail(err)
			}
			staged = append(staged, st)
			summary = append(summary, "fileinto:"+x.Mailbox)
		case sieve.Redirect:
			out.redirects = append(out.redirects, x.Address)
			summary = append(summary, "redirect:"+x.Address)
		case sieve.Vacation:
			out.vacation = &x
			summary = append(summary, "vacation")
		case sieve.Reject:
			summary = append(summary, "reject")
			reason := strings.TrimSpace(x.Reason)
			if reason == "" {
				reason = "Message refused by the recipient's filter"
			}
			log.Info("sieve rejected the message", "event", "sieve", "actions", summary)
			// RFC 5429 §2.1: refused at SMTP/LMTP time where the reply is
			// this recipient's alone; otherwise the bounce says why.
			return fail(&PermanentError{Status: "5.7.1", Text: reason, Err: errSieveReject})
		case sieve.Discard:
			summary = append(summary, "discard")
		}
	}
	u.sieve = out
	log.Info("sieve", "event", "sieve", "actions", summary)
	if len(staged) == 0 {
		return nil, nil
	}
	return staged, nil
}

var errSieveReject = errors.New("rejected by a sieve script")

func hasRedirect(actions []sieve.Action) bool {
	for _, a := range actions {
		if _, ok := a.(sieve.Redirect); ok {
			return true
		}
	}
	return false
}

// keepInstead drops the redirects, keeping the message if they were
// all it would have got.
func keepInstead(actions []sieve.Action) []sieve.Action {
	var out []sieve.Action
	stored := false
	for _, a := range actions {
		switch a.(type) {
		case sieve.Redirect:
			continue
		case sieve.Keep, sieve.FileInto:
			stored = true
		}
		out = append(out, a)
	}
	if !stored {
		out = append(out, sieve.Keep{Implicit: true})
	}
	return out
}

// logScriptError logs each script error in err with its script, line
// and column, and reports whether err holds only such errors (others are
// the store's trouble).
func logScriptError(log interface {
	Warn(string, ...any)
}, msg string, err error) bool {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var se *sieve.Error
		if !errors.As(e, &se) {
			return false
		}
		args := []any{"event", "sieve_error", "script", se.Script, "line", se.Pos.Line, "col", se.Pos.Col}
		if len(se.Via) > 0 {
			args = append(args, "included_from", se.IncludedFrom())
		}
		log.Warn(msg, append(args, "err", e)...)
	}
	return true
}

// stageFolder stages one copy into a folder of home: INBOX ("" folder)
// with the Store's Stage when there are no flags, else StageFolder.
func (t *Txn) stageFolder(ctx context.Context, home string, d mailbox.Delivery, r io.Reader) (mailbox.Staged, error) {
	fs, ok := t.d.opts.Store.(FolderStore)
	if !ok || (d.Folder == "" || strings.EqualFold(d.Folder, "INBOX")) && len(d.Flags) == 0 {
		if !ok && d.Folder != "" && !strings.EqualFold(d.Folder, "INBOX") {
			return nil, fmt.Errorf("%s: %w (this store has only INBOX)", d.Folder, mailbox.ErrNoFolder)
		}
		return t.d.opts.Store.Stage(ctx, home, r)
	}
	return fs.StageFolder(ctx, home, d, r)
}

// sieveRedirects sends the redirects the scripts of the units decided,
// through the queue as forwards go (with the sender rewritten by SRS):
// after the mailbox copies are staged, before they are committed.
func (t *Txn) sieveRedirects(ctx context.Context, boxes []*unit, sp *spool, now time.Time) error {
	var first error
	for _, u := range boxes {
		if u.sieve == nil || len(u.sieve.redirects) == 0 || u.err != nil {
			continue
		}
		err := errors.New("sieve redirect: no queue to send it")
		var id string
		from := t.forwardSender()
		if t.d.opts.Forwarder != nil {
			// Delivered-To marks the copy, so that if it comes back here
			// the script's redirect is not done again (stageBox).
			hdr := fmt.Sprintf("Delivered-To: %s\n", u.leaf.Rcpt) +
				ReceivedHeader(t.info, t.d.opts.Hostname, t.id, u.leaf.Rcpt.String(), now)
			id, err = t.d.opts.Forwarder.Enqueue(ctx, from, u.sieve.redirects, sp.withHeader(hdr))
		}
		if err != nil {
			// The recipient is retried as a whole: its copies go.
			t.remove(u)
			u.err = fmt.Errorf("sieve redirect for %s: %w", u.leaf.Rcpt, err)
			first = cmp.Or(first, u.err)
			continue
		}
		t.log.Info("redirected by sieve", "event", "forwarded", "rcpt", u.leaf.Rcpt.String(), "to", u.sieve.redirects, "from", from, "forward_id", id)
	}
	return first
}

// forwardSender is the envelope sender of forwarded copies: the
// original, rewritten with SRS when configured.
func (t *Txn) forwardSender() string {
	from := t.from
	if t.d.opts.SRS != nil && from != "" {
		if rewritten, err := t.d.opts.SRS.Forward(from); err == nil {
			from = rewritten
		} else {
			t.log.Warn("sender not rewritten with SRS", "from", from, "err", err)
		}
	}
	return from
}

// sieveAfter does, for the units whose copies are committed, what waits
// for a delivery that succeeded: the vacation reply (RFC 5230) and the
// duplicate ids to remember (RFC 7352). Their failures are logged; the
// message is delivered whatever becomes of them.
func (t *Txn) sieveAfter(ctx context.Context, boxes []*unit, now time.Time) {
	ctx = context.WithoutCancel(ctx)
	mem := t.d.opts.Sieve.Memory
	for _, u := range boxes {
		if u.sieve == nil || u.err != nil {
			continue
		}
		home := u.leaf.Home
		log := t.log.With("rcpt", u.leaf.Rcpt.String(), "home", home)
		if len(u.sieve.dups) > 0 && mem != nil {
			keys := map[string]time.Duration{}
			for _, d := range u.sieve.dups {
				keys[d.Key] = d.Period
			}
			if err := mem.Remember(ctx, home, "d", keys); err != nil {
				log.Warn("sieve duplicate ids not remembered", "event", "sieve_error", "err", err)
			}
		}
		if v := u.sieve.vacation; v != nil {
			t.vacation(ctx, u, *v, now, log)
		}
	}
}

// vacation sends a vacation reply if RFC 3834's rules and the memory of
// replies already sent allow it.
func (t *Txn) vacation(ctx context.Context, u *unit, v sieve.Vacation, now time.Time, log interface {
	Info(string, ...any)
	Warn(string, ...any)
}) {
	rcpt := u.leaf.Rcpt
	base, _ := address.StripExtension(rcpt.Local, t.d.opts.Delimiter)
	own := []string{address.Address{Local: base, Domain: rcpt.Domain}.String()}
	for _, i := range u.rcpts {
		own = append(own, t.rcpts[i].Address.String())
	}
	o := sieve.ReplyOptions{Sender: t.from, Recipient: rcpt.String(), Own: own, Hostname: t.d.opts.Hostname, Now: now,
		Delivers: func(addr string) bool { return t.d.deliversTo(ctx, addr, u.leaf.Home) }}
	from, skip := v.CheckReply(u.sieve.msg, o)
	if skip != "" {
		log.Info("no vacation reply", "event", "vacation_skipped", "reason", skip)
		return
	}
	key := v.MemoryKey(t.from)
	mem := t.d.opts.Sieve.Memory
	if mem != nil {
		seen, err := mem.Seen(ctx, u.leaf.Home, "v", key)
		if err != nil {
			log.Warn("no vacation reply: the memory of replies cannot be read", "event", "vacation_failed", "err", err)
			return
		}
		if seen {
			log.Info("no vacation reply", "event", "vacation_skipped", "reason", "already replied to this sender within the period")
			return
		}
	}
	if t.d.opts.Forwarder == nil {
		log.Warn("no vacation reply: no queue to send it", "event", "vacation_failed")
		return
	}
	reply := v.BuildReply(u.sieve.msg, o, from)
	if s := t.d.opts.Sieve.Signer; s != nil {
		sig, err := s.Sign(bytes.NewReader(reply))
		if err != nil {
			log.Warn("vacation reply not signed", "event", "vacation_unsigned", "err", err)
		} else {
			reply = append([]byte(sig), reply...)
		}
	}
	// RFC 3834 §3.3 and RFC 5230 §5.1: the envelope sender is <>, so that
	// nothing answers the answer.
	id, err := t.d.opts.Forwarder.Enqueue(ctx, "", []string{t.from}, bytes.NewReader(reply))
	if err != nil {
		log.Warn("vacation reply not queued", "event", "vacation_failed", "err", err)
		return
	}
	log.Info("vacation reply queued", "event", "vacation_sent", "to", t.from, "forward_id", id)
	if mem != nil {
		if err := mem.Remember(ctx, u.leaf.Home, "v", map[string]time.Duration{key: v.Period}); err != nil {
			log.Warn("vacation reply not remembered; the sender may get another", "event", "vacation_failed", "err", err)
		}
	}
}

// deliversTo reports whether a local address delivers into home, through
// aliases or as the account itself: whether it is one of that user's
// addresses for vacation (RFC 5230 §4.5). A remote or unknown address,
// or one that cannot be resolved now, is not.
func (d *Deliverer) deliversTo(ctx context.Context, addr, home string) bool {
	rc, err := d.Route(ctx, addr)
	if err != nil {
		return false
	}
	for _, l := range rc.leaves {
		if l.Err == nil && l.Kind == alias.Mailbox && l.Home == home {
			return true
		}
	}
	return false
}
