package queue

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"time"
)

// retryLater is how soon a message is looked at again after trouble that
// is the queue's own (its file could not be opened, the database failed).
const retryLater = time.Minute

// when is the time rec needs attention: its earliest pending recipient,
// but no later than its expiry or its delay warning.
func (q *Queue) when(rec *record, now time.Time) time.Time {
	t := rec.next(now)
	if t.IsZero() {
		return t
	}
	if exp := rec.Created.Add(q.opts.MaxLifetime); exp.Before(t) {
		t = exp
	}
	if q.opts.DelayWarning > 0 && !rec.Warned && rec.From != "" {
		if w := rec.Created.Add(q.opts.DelayWarning); w.Before(t) {
			t = w
		}
	}
	if t.Before(now) {
		t = now
	}
	return t
}

// process runs one attempt on a message and puts it back on the
// schedule. It never lets a panic out of the worker.
func (q *Queue) process(ctx context.Context, id string) {
	next := time.Now().Add(retryLater)
	defer func() {
		if p := recover(); p != nil {
			q.opts.Panics.Record(q.log.With("queue_id", id), "queue worker", p)
		}
		q.sched.done(id, next)
	}()
	next = q.attempt(ctx, id)
}

// attempt delivers the message's due recipients, records each result as
// soon as it is known, sends the DSNs that the results call for, and
// returns when the message is due again (zero: finished or gone).
func (q *Queue) attempt(ctx context.Context, id string) time.Time {
	rec, err := q.get(id)
	switch {
	case errors.Is(err, ErrNotFound):
		return time.Time{}
	case errors.Is(err, errCorrupt):
		q.setAside(id, err)
		return time.Time{}
	case err != nil:
		q.log.Error("read queue record", "queue_id", id, "err", err)
		return time.Now().Add(retryLater)
	}
	f, err := os.Open(q.bodyPath(id))
	if errors.Is(err, os.ErrNotExist) {
		q.setAside(id, fmt.Errorf("%w: body file %s is missing", errCorrupt, q.bodyPath(id)))
		return time.Time{}
	}
	if err != nil {
		q.log.Error("open queued message", "queue_id", id, "err", err)
		return time.Now().Add(retryLater)
	}
	defer f.Close()
	if err := checkBody(f, rec); err != nil {
		q.setAside(id, err)
		return time.Time{}
	}

	now := time.Now()
	var due []int
	for i, rc := range rec.Rcpts {
		if rc.State == StatePending && !rc.Next.After(now) {
			due = append(due, i)
		}
	}
	// A message past its lifetime gets one last attempt, due or not.
	if !now.Before(rec.Created.Add(q.opts.MaxLifetime)) {
		due = due[:0]
		for i, rc := range rec.Rcpts {
			if rc.State == StatePending {
				due = append(due, i)
			}
		}
	}
	for _, group := range q.groups(ctx, rec, due) {
		if ctx.Err() != nil {
			break
		}
		results := q.deliverGroup(ctx, rec, f, group)
		if ctx.Err() != nil {
			// Shutting down: keep the successes, forget the rest of the
			// attempt (the peer saw no final dot, so it has nothing).
			for i, err := range results {
				if err != nil {
					group.idx[i] = -1
				}
			}
		}
		rec, err = q.update(id, func(r *record) error {
			q.apply(r, group, results, time.Now())
			return nil
		})
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				q.log.Error("record delivery results", "queue_id", id, "err", err)
				return time.Now().Add(retryLater)
			}
			return time.Time{}
		}
	}
	if rec.done() {
		if err := q.remove(id); err != nil {
			q.log.Error("remove a finished message", "queue_id", id, "err", err)
		}
		return time.Time{}
	}
	if ctx.Err() != nil {
		return q.when(rec, time.Now())
	}
	return q.settle(id, f)
}

// group is recipients of one message that go together: one local
// recipient, or the recipients of one remote domain.
type group struct {
	local bool
	idx   []int // positions in record.Rcpts
}

// groups splits the due recipients by destination, in order of first
// appearance (RFC 5321 §5: one connection per destination domain).
func (q *Queue) groups(ctx context.Context, rec *record, due []int) []*group {
	var out []*group
	byDomain := map[string]*group{}
	for _, i := range due {
		addr := rec.Rcpts[i].Addr
		if q.opts.Local != nil && q.opts.DeliverLocal != nil && q.opts.Local(ctx, addr) {
			out = append(out, &group{local: true, idx: []int{i}})
			continue
		}
		domain := strings.ToLower(addr[strings.LastIndexByte(addr, '@')+1:])
		g := byDomain[domain]
		if g == nil {
			g = &group{}
			byDomain[domain] = g
			out = append(out, g)
		}
		g.idx = append(g.idx, i)
	}
	return out
}

// deliverGroup returns one result per recipient of g.
func (q *Queue) deliverGroup(ctx context.Context, rec *record, body io.ReaderAt, g *group) []error {
	results := make([]error, len(g.idx))
	if g.local {
		rcpt := rec.Rcpts[g.idx[0]].Addr
		results[0] = q.opts.DeliverLocal(ctx, rec.From, rcpt, io.NewSectionReader(body, 0, rec.Size))
		return results
	}
	msg := &Message{ID: rec.ID, From: rec.From, Size: rec.Size, EightBit: rec.Body8,
		UTF8Header: rec.UTF8Hdr, Body: body}
	for _, i := range g.idx {
		msg.To = append(msg.To, rec.Rcpts[i].Addr)
	}
	err := q.opts.Transport.Send(ctx, msg)
	var per RcptErrors
	switch {
	case err == nil:
	case errors.As(err, &per) && len(per) == len(results):
		copy(results, per)
	default:
		for i := range results {
			results[i] = err
		}
	}
	return results
}

// apply records the results of one group in r and logs each outcome.
func (q *Queue) apply(r *record, g *group, results []error, now time.Time) {
	expired := !now.Before(r.Created.Add(q.opts.MaxLifetime))
	for k, i := range g.idx {
		if i < 0 {
			continue
		}
		rc := &r.Rcpts[i]
		err := results[k]
		// delay: since the message was queued, as Postfix's delay=.
		log := q.log.With("queue_id", r.ID, "from", r.From, "rcpt", rc.Addr, "delay", now.Sub(r.Created))
		if err == nil {
			rc.State = StateSent
			rc.Attempts++
			rc.LastError = ""
			how := "smtp"
			if g.local {
				how = "local"
			}
			log.Info("sent", "event", "sent", "via", how, "attempts", rc.Attempts)
			continue
		}
		rc.Attempts++
		rc.LastError = err.Error()
		rc.Status, rc.Diag, rc.RemoteMTA = "", "", ""
		var qe *Error
		if errors.As(err, &qe) {
			rc.Status, rc.Diag, rc.RemoteMTA = qe.Status, qe.Diag, qe.RemoteMTA
		}
		switch {
		case !temporary(err):
			rc.State = StateFailed
			if rc.Status == "" || rc.Status[0] != '5' {
				rc.Status = "5.0.0"
			}
			log.Info("bounced", "event", "bounced", "status", rc.Status, "err", err)
		case expired:
			rc.State = StateFailed
			rc.Expired = true
			if rc.Status == "" || rc.Status[0] != '4' {
				rc.Status = "4.4.7" // RFC 3463: delivery time expired
			}
			log.Info("expired", "event", "expired", "status", rc.Status, "attempts", rc.Attempts,
				"age", now.Sub(r.Created).Round(time.Second).String(), "err", err)
		default:
			wait := q.opts.Retry[min(rc.Attempts, len(q.opts.Retry))-1]
			rc.Next = now.Add(wait)
			if rc.Status == "" {
				rc.Status = "4.0.0"
			}
			log.Info("deferred", "event", "deferred", "status", rc.Status, "attempts", rc.Attempts,
				"next", rc.Next.Format(time.RFC3339), "err", err)
		}
	}
}

// settle sends the notifications the recipients' states call for (a DSN
// for failures, the one delay warning) and removes a finished message.
func (q *Queue) settle(id string, body *os.File) time.Time {
	rec, err := q.get(id)
	if err != nil {
		return time.Time{}
	}
	now := time.Now()
	var failed, delayed []int
	for i, rc := range rec.Rcpts {
		switch rc.State {
		case StateFailed:
			failed = append(failed, i)
		case StatePending:
			delayed = append(delayed, i)
		}
	}
	if len(failed) > 0 {
		if err := q.notify(rec, body, failed, false); err != nil {
			q.log.Error("could not queue the bounce", "queue_id", id, "err", err)
			return now.Add(retryLater)
		}
	}
	if len(delayed) > 0 && !rec.Warned && q.opts.DelayWarning > 0 && !now.Before(rec.Created.Add(q.opts.DelayWarning)) {
		if err := q.notify(rec, body, delayed, true); err != nil {
			q.log.Error("could not queue the delay warning", "queue_id", id, "err", err)
			return now.Add(retryLater)
		}
	}
	if rec, err = q.get(id); err != nil {
		if errors.Is(err, ErrNotFound) {
			// notify removed the finished record; its body goes now.
			q.sched.remove(id)
			q.removeBody(id)
		}
		return time.Time{}
	}
	if rec.done() {
		if err := q.remove(id); err != nil {
			q.log.Error("remove finished message", "queue_id", id, "err", err)
			return now.Add(retryLater)
		}
		return time.Time{}
	}
	return q.when(rec, now)
}

// checkBody tells a damaged body file from a good one: its size and
// checksum must be those recorded at Enqueue.
func checkBody(f *os.File, rec *record) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != rec.Size {
		return fmt.Errorf("%w: body file is %d bytes, the record says %d", errCorrupt, fi.Size(), rec.Size)
	}
	h := crc32.New(crcTable)
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, rec.Size)); err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if h.Sum32() != rec.CRC {
		return fmt.Errorf("%w: body file checksum %08x, the record says %08x", errCorrupt, h.Sum32(), rec.CRC)
	}
	return nil
}

// remove deletes a finished (or dropped) message: record first, so that a
// crash in between leaves an orphan file that Open removes, never a
// record without its body.
func (q *Queue) remove(id string) error {
	if err := q.commit.do(func(tx *boltTx) error {
		if err := tx.Bucket(bucketMsgs).Delete([]byte(id)); err != nil {
			return err
		}
		return tx.Bucket(bucketHeld).Delete([]byte(id))
	}); err != nil {
		return err
	}
	q.sched.remove(id)
	return q.removeBody(id)
}

// removeBody deletes the body file of a message whose record is gone.
func (q *Queue) removeBody(id string) error {
	if err := os.Remove(q.bodyPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		q.log.Error("remove queue file", "queue_id", id, "err", err)
		return err
	}
	return nil
}
