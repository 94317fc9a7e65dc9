package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Failure is one recipient that failed for good before the message ever
// reached the queue: a local delivery piece (a pipe that exited 1, a
// refused file target) of a message whose other recipients were
// delivered, so the protocol could not refuse it.
type Failure struct {
	Rcpt string
	// Status is the RFC 3463 code ("5.3.0"); "" means 5.0.0.
	Status string
	Err    error
}

// Bounce queues a delivery status notification (RFC 3464) to from about
// failures of the message read from r, as the queue's own bounces are: a
// null sender gets none (RFC 5321 §4.5.5). It returns once the DSN is
// durable, so the caller may acknowledge the message.
func (q *Queue) Bounce(ctx context.Context, from string, failures []Failure, r io.Reader) error {
	if len(failures) == 0 {
		return errors.New("bounce: no failures")
	}
	if from == "" {
		q.log.Info("no DSN: the sender is the null sender", "rcpts", len(failures))
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bounce: %w", err)
	}
	now := time.Now()
	rec := &record{ID: newID(), From: from, Created: now}
	idx := make([]int, len(failures))
	for i, f := range failures {
		idx[i] = i
		var why string
		if f.Err != nil {
			why = f.Err.Error()
		}
		rec.Rcpts = append(rec.Rcpts, rcptState{Addr: f.Rcpt, State: StateFailed, Status: f.Status, LastError: why})
	}
	var hdr strings.Builder
	readHeader(&hdr, r)
	dsnID, err := q.store("", []string{from}, func(w io.Writer) (*bodyWriter, error) {
		bw := newBodyWriter(w)
		if err := q.writeDSN(bw, rec, idx, false, hdr.String(), now); err != nil {
			return bw, err
		}
		return bw, bw.finish()
	}, nil)
	if err != nil {
		return fmt.Errorf("bounce: %w", err)
	}
	q.log.Info("queued", "event", "queued", "queue_id", dsnID, "from", "", "rcpts", []string{from},
		"dsn", "bounce", "for_queue_id", rec.ID)
	return nil
}
