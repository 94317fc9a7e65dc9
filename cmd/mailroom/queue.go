package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"mailroom/config"
	"mailroom/internal/ctl"
	"mailroom/mda"
	"mailroom/queue"
	"mailroom/smtp/outbound"
)

// openQueue builds the outbound queue for a: the SMTP transport from
// [relay], the retry policy from qc ([queue]), and local delivery through
// mda for bounces to local senders. It does not send until runQueue.
func openQueue(a *app, qc config.Queue) (*queue.Queue, error) {
	qs, err := qc.Settings()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.cfg.Path, err)
	}
	rs, err := a.cfg.Relay.Settings()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.cfg.Path, err)
	}
	delayWarning := qs.DelayWarning
	if delayWarning == 0 {
		delayWarning = -1 // queue.Options: negative is never
	}
	tr := outbound.New(outbound.Options{
		Hostname:    a.cfg.Hostname,
		Resolver:    a.resolver,
		Port:        rs.MXPort,
		Smarthost:   rs.Smarthost,
		ImplicitTLS: rs.ImplicitTLS,
		Username:    rs.Username,
		Password:    rs.Password,
		Logger:      a.log.With("proto", "smtp-out"),
	})
	return queue.Open(queue.Options{
		DB:        a.db,
		Dir:       filepath.Join(a.cfg.DataDir, "queue"),
		Hostname:  a.cfg.Hostname,
		Transport: tr,
		Local:     func(ctx context.Context, rcpt string) bool { return isLocal(ctx, a, rcpt) },
		DeliverLocal: func(ctx context.Context, from, rcpt string, r io.Reader) error {
			return deliverLocal(ctx, a, from, rcpt, r)
		},
		Retry:        qs.Retry,
		MaxLifetime:  qs.MaxLifetime,
		DelayWarning: delayWarning,
		Concurrency:  qs.Concurrency,
		Signer:       a.queueSigner(),
		Logger:       a.log,
		Panics:       a.panics,
	})
}

// isLocal reports whether rcpt's domain is one of ours: such mail (a
// bounce to a local sender) is delivered here, never sent out.
func isLocal(ctx context.Context, a *app, rcpt string) bool {
	_, err := a.mda.Resolve(ctx, rcpt)
	return !errors.Is(err, mda.ErrNotLocal) && !errors.Is(err, mda.ErrBadAddress)
}

// deliverLocal hands a queued message (a DSN, usually) to mda, marking the
// failures that retrying cannot cure as permanent.
func deliverLocal(ctx context.Context, a *app, from, rcpt string, r io.Reader) error {
	txn, err := a.mda.Begin(ctx, from, mda.Info{Proto: "local", Internal: true})
	if err != nil {
		return queue.Permanent("5.1.7", err)
	}
	if err := txn.AddRcpt(ctx, rcpt); err != nil {
		return localError(err)
	}
	return localError(txn.DeliverAll(ctx, r))
}

// localError gives the queue the RFC 3463 status of a local delivery that
// failed for good; anything else stays temporary, to be retried.
func localError(err error) error {
	var pe *mda.PermanentError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mda.ErrNoSuchUser):
		return queue.Permanent("5.1.1", err)
	case errors.Is(err, mda.ErrBadAddress):
		return queue.Permanent("5.1.3", err)
	case errors.Is(err, mda.ErrTooBig):
		return queue.Permanent("5.3.4", err)
	case errors.Is(err, mda.ErrLoop):
		// A forwarding loop (aliases, Delivered-To, too many hops):
		// retrying only goes round again.
		return queue.Permanent("5.4.6", err)
	case errors.As(err, &pe):
		return queue.Permanent(pe.Status, err)
	}
	return err
}

// runQueue delivers queued mail in the background until stop is called
// (when shutdown begins; Enqueue still works after it, and what it stores
// is sent after the next start).
func runQueue(ctx context.Context, a *app, q *queue.Queue) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := q.Run(ctx); err != nil {
			a.log.Error("queue stopped", "err", err)
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

type queueDropArgs struct {
	ID string `json:"id"`
}

type queueFlushResult struct {
	Messages int `json:"messages"`
}

func opQueueList(ctx context.Context, a *app, _ json.RawMessage, _ io.Reader) (any, error) {
	q := a.queue
	return q.List()
}

func opQueueFlush(ctx context.Context, a *app, _ json.RawMessage, _ io.Reader) (any, error) {
	q := a.queue
	n, err := q.Flush()
	return queueFlushResult{Messages: n}, err
}

func opQueueDrop(ctx context.Context, a *app, raw json.RawMessage, _ io.Reader) (any, error) {
	args, err := decodeArgs[queueDropArgs](raw)
	if err != nil {
		return nil, err
	}
	q := a.queue
	if err := q.Drop(args.ID); err != nil {
		if errors.Is(err, queue.ErrNotFound) {
			return nil, &ctl.Error{Exit: exitDataErr, Msg: err.Error() + " (see mailroom queue list)"}
		}
		return nil, err
	}
	// The queue logs the drop (event=dropped).
	return nil, nil
}

// cmdQueue is `mailroom queue list|flush|drop ID`.
func cmdQueue(args []string, stdout, stderr io.Writer) error {
	fs, cf := newFlagSet("queue", stderr)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return withExit(exitUsage, errors.New("say list, flush or drop ID"))
	}
	sub, pos := pos[0], pos[1:]
	want := map[string]int{"list": 0, "flush": 0, "drop": 1}
	n, ok := want[sub]
	if !ok {
		return withExit(exitUsage, fmt.Errorf("unknown queue command %q: say list, flush or drop ID", sub))
	}
	if len(pos) != n {
		return withExit(exitUsage, fmt.Errorf("queue %s takes %d argument(s), got %d", sub, n, len(pos)))
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	ctx := context.Background()
	switch sub {
	case "list":
		var infos []queue.Info
		if err := call(ctx, cfg, "queue.list", nil, nil, &infos); err != nil {
			return err
		}
		printQueue(stdout, infos, time.Now())
	case "flush":
		var res queueFlushResult
		if err := call(ctx, cfg, "queue.flush", nil, nil, &res); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d message(s) due now\n", res.Messages)
	case "drop":
		if err := call(ctx, cfg, "queue.drop", queueDropArgs{ID: pos[0]}, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: dropped\n", pos[0])
	}
	return nil
}

// printQueue writes one line per message: id, age, sender, the recipients
// still to do, attempts, next attempt and the last error.
func printQueue(w io.Writer, infos []queue.Info, now time.Time) {
	if len(infos) == 0 {
		fmt.Fprintln(w, "queue is empty")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGE\tSENDER\tRECIPIENTS\tATTEMPTS\tNEXT\tLAST ERROR")
	for _, inf := range infos {
		var rcpts []string
		attempts, next, lastErr := 0, time.Time{}, ""
		for _, r := range inf.Rcpts {
			if r.State != queue.StatePending && r.State != queue.StateFailed {
				continue
			}
			rcpts = append(rcpts, r.Addr)
			attempts = max(attempts, r.Attempts)
			if r.State == queue.StatePending && (next.IsZero() || r.Next.Before(next)) {
				next = r.Next
			}
			if lastErr == "" {
				lastErr = r.LastError
			}
		}
		nextStr := "-"
		switch {
		case inf.Held:
			nextStr, lastErr = "held", inf.Reason
		case !next.IsZero() && next.After(now):
			nextStr = "in " + next.Sub(now).Round(time.Second).String()
		case !next.IsZero():
			nextStr = "now"
		}
		from := inf.From
		if from == "" {
			from = "<>"
		}
		age := "-"
		if !inf.Created.IsZero() {
			age = now.Sub(inf.Created).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", inf.ID, age, from, strings.Join(rcpts, ","),
			attempts, nextStr, strings.ReplaceAll(lastErr, "\t", " "))
	}
	tw.Flush()
}
