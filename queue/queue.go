// Package queue is mailroom's outbound queue: every message that leaves
// the server (a forward to a remote address, a submission to a remote
// domain, a bounce) is enqueued here, kept durably, and handed to a
// Transport until each recipient is delivered or has failed, in which case
// the sender gets a delivery status notification (RFC 3464).
//
// Message bodies are files under Options.Dir, written with the same
// durability as a mailbox delivery (fsync, rename, directory fsync); the
// envelope and each recipient's state live in bbolt. Enqueue returns only
// once both are on disk. A recipient's success is committed as soon as the
// remote side accepts it, so a restart retries only what is left.
//
// The package knows nothing of SMTP or of mailboxes: the Transport (the
// outbound SMTP client) and the local delivery hooks are injected, so that
// queue imports neither smtp nor mda.
package queue

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailroom/internal/address"
	"mailroom/internal/durable"
	"mailroom/internal/panics"
)

// Transport sends a message to recipients that share one domain. It
// returns nil when every recipient was accepted, RcptErrors when they
// fared differently, and any other error for all of them. Errors are
// temporary unless they have a Temporary() bool method that says
// otherwise (see Error). The smtp/outbound package implements it.
type Transport interface {
	Send(ctx context.Context, msg *Message) error
}

// Message is what a Transport sends.
type Message struct {
	ID   string
	From string   // "" for the null sender
	To   []string // all of one domain
	// Size is the body's length in octets, CRLF line ends included: the
	// value for SIZE= (RFC 1870).
	Size int64
	// EightBit is set when the body has octets above 127: the peer must
	// offer 8BITMIME (RFC 6152).
	EightBit bool
	// UTF8Header is set when the header has UTF-8 (RFC 6532): SMTPUTF8 is
	// used if the peer offers it. (A UTF-8 envelope address requires it;
	// the Transport checks that itself.)
	UTF8Header bool
	// Body is the message with CRLF line ends; read it with
	// io.NewSectionReader(Body, 0, Size), as often as needed (once per MX
	// host tried).
	Body io.ReaderAt
}

// RcptErrors is a Transport's per-recipient result: one entry per
// Message.To, nil for an accepted recipient.
type RcptErrors []error

func (e RcptErrors) Error() string {
	var parts []string
	for _, err := range e {
		if err != nil {
			parts = append(parts, err.Error())
		}
	}
	return strings.Join(parts, "; ")
}

// Error is a delivery failure with what a DSN reports about it.
type Error struct {
	// Perm marks a permanent failure: the recipient is bounced at once.
	Perm bool
	// Status is the RFC 3463 status code, "5.1.1" or "4.4.1".
	Status string
	// Diag is the RFC 3464 Diagnostic-Code, such as "smtp; 550 5.1.1
	// <bob@example.net>: no such user": the remote reply, if there was one.
	Diag string
	// RemoteMTA names the host that answered ("mx.example.net"), if any.
	RemoteMTA string
	Err       error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return e.Diag
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the failure may go away on a later attempt.
func (e *Error) Temporary() bool { return !e.Perm }

// Permanent wraps err as a permanent failure with RFC 3463 status code
// status ("5.1.1"); local delivery hooks and transports use it.
func Permanent(status string, err error) error {
	return &Error{Perm: true, Status: status, Err: err}
}

// temporary reports whether err, returned by a Transport or a local
// delivery, is worth retrying: anything that does not say otherwise is.
func temporary(err error) bool {
	var t interface{ Temporary() bool }
	if errors.As(err, &t) {
		return t.Temporary()
	}
	return true
}

// Options configure a Queue. DB, Dir, Hostname and Transport are required.
type Options struct {
	// DB is mailroom.db; the queue keeps its records in buckets of its own.
	DB *bolt.DB
	// Dir holds the message bodies (<data_dir>/queue); it is created.
	Dir string
	// Hostname is the Reporting-MTA of DSNs and the domain of their
	// Message-IDs.
	Hostname  string
	Transport Transport
	// Local reports whether rcpt is delivered on this server; such
	// recipients (typically a bounce to a local sender) go to
	// DeliverLocal instead of the Transport. Nil: none is local.
	Local func(ctx context.Context, rcpt string) bool
	// DeliverLocal delivers r to a local recipient. An error is temporary
	// unless it says otherwise (Permanent).
	DeliverLocal func(ctx context.Context, from, rcpt string, r io.Reader) error
	// Retry lists the waits after each failed attempt; the last repeats.
	// Default: 5m, 10m, 20m, 40m, 1h, 2h, 4h.
	Retry []time.Duration
	// MaxLifetime is how long temporary failures are retried before the
	// message bounces (RFC 5321 §4.5.4.1: 4 to 5 days). Default 5 days.
	MaxLifetime time.Duration
	// DelayWarning is the age at which the sender is told, once, that the
	// message is still undelivered. Default 4h; negative: never.
	DelayWarning time.Duration
	// Concurrency is how many messages are delivered at once. Default 16.
	Concurrency int
	// ShutdownGrace is how long attempts under way may go on once Run's
	// context ends. Default 10s; negative: cancel them at once.
	ShutdownGrace time.Duration
	Logger        *slog.Logger
	// Panics counts the panics recovered in workers (nil: the queue's
	// own count).
	Panics *panics.Recorder
	// Signer, if set, signs the DSNs the queue writes (mailauth/dkim).
	Signer Signer
}

// Signer returns header fields (DKIM-Signature) to put before a message,
// "" when it has none for the message's From: domain.
type Signer interface {
	Sign(msg io.Reader) (string, error)
}

var (
	bucketMsgs = []byte("queue")
	bucketHeld = []byte("queue.held") // set aside: corrupt or unreadable
)

// ErrNotFound is returned by Drop for an unknown id.
var ErrNotFound = errors.New("no such queued message")

// Queue is the outbound queue. Its methods are safe for concurrent use.
type Queue struct {
	opts   Options
	db     *bolt.DB
	dir    string
	shards map[string]*durable.DirSyncer // shard directory -> its fsyncs
	log    *slog.Logger
	sched  *schedule
	commit *committer
}

// Open prepares the queue: buckets, the body directory (with files left by
// a crash removed) and the schedule of every stored message. It does not
// send anything until Run.
func Open(opts Options) (*Queue, error) {
	if opts.DB == nil || opts.Dir == "" || opts.Transport == nil {
		return nil, errors.New("queue: DB, Dir and Transport are required")
	}
	if len(opts.Retry) == 0 {
		opts.Retry = []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour}
	}
	if opts.MaxLifetime <= 0 {
		opts.MaxLifetime = 5 * 24 * time.Hour
	}
	if opts.DelayWarning == 0 {
		opts.DelayWarning = 4 * time.Hour
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	if opts.ShutdownGrace == 0 {
		opts.ShutdownGrace = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Panics == nil {
		opts.Panics = new(panics.Recorder)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create queue directory: %w", err)
	}
	q := &Queue{opts: opts, db: opts.DB, dir: opts.Dir, shards: map[string]*durable.DirSyncer{},
		log: opts.Logger, sched: newSchedule(), commit: &committer{db: opts.DB}}
	for _, c := range idAlphabet {
		d := filepath.Join(opts.Dir, string(c))
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create queue directory: %w", err)
		}
		q.shards[d] = durable.NewDirSyncer(d)
	}
	// The shards' entries in Dir, and Dir's own entry in its parent.
	for _, d := range []string{opts.Dir, filepath.Dir(opts.Dir)} {
		if err := durable.SyncDir(d); err != nil {
			return nil, err
		}
	}
	if err := q.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMsgs, bucketHeld} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("queue: create buckets: %w", err)
	}
	if err := q.load(); err != nil {
		return nil, err
	}
	return q, nil
}

// load schedules every stored message, sets aside records that do not
// decode, and removes body files that no record names (a crash between
// writing the file and committing the record; nothing was acknowledged).
func (q *Queue) load() error {
	known := map[string]bool{}
	var bad, finished []string
	now := time.Now()
	err := q.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketHeld).ForEach(func(k, _ []byte) error {
			known[string(k)] = true
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketMsgs).ForEach(func(k, v []byte) error {
			known[string(k)] = true
			rec, err := decodeRecord(v)
			if err != nil || rec.ID != string(k) {
				bad = append(bad, string(k))
				return nil
			}
			if rec.done() {
				// A crash came between its last result and its removal.
				finished = append(finished, rec.ID)
				return nil
			}
			q.sched.set(rec.ID, q.when(rec, now))
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("queue: load: %w", err)
	}
	for _, id := range bad {
		q.setAside(id, errCorrupt)
	}
	for _, id := range finished {
		if err := q.remove(id); err != nil {
			q.log.Error("remove a finished message", "queue_id", id, "err", err)
		}
	}
	root, err := os.ReadDir(q.dir)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	for _, e := range root {
		if !e.IsDir() {
			q.log.Warn("removing a stray file from the queue directory", "file", filepath.Join(q.dir, e.Name()))
			os.Remove(filepath.Join(q.dir, e.Name()))
		}
	}
	for d := range q.shards {
		entries, err := os.ReadDir(d)
		if err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		for _, e := range entries {
			if n := e.Name(); strings.HasPrefix(n, durable.TempPrefix) || !known[n] || q.bodyPath(n) != filepath.Join(d, n) {
				q.log.Warn("removing a queue file that no record names (left by a crash before the message was accepted)", "file", filepath.Join(d, n))
				os.Remove(filepath.Join(d, n))
			}
		}
	}
	return nil
}

const idAlphabet = "0123456789ABCDEFGHJKLMNPQRSTVWXY"

var idEncoding = base32.NewEncoding(idAlphabet).WithPadding(base32.NoPadding)

func newID() string {
	var b [10]byte
	rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}

// shardDir is the directory of id's body file. Bodies are spread over
// one directory per last id character: with many concurrent enqueues and
// sends, creating, renaming and removing files in a single directory
// contend for its lock (the kernel spends more time there than on the
// fsyncs).
func (q *Queue) shardDir(id string) string { return filepath.Join(q.dir, id[len(id)-1:]) }

func (q *Queue) bodyPath(id string) string { return bodyPathIn(q.dir, id) }

// bodyPathIn is where the body of message id lies in queue directory dir.
func bodyPathIn(dir, id string) string { return filepath.Join(dir, id[len(id)-1:], id) }

// Enqueue stores a message for from ("" for the null sender) to the
// recipients in to and returns its queue id. It returns only once the body
// and the record are on disk, so the caller may acknowledge the message.
func (q *Queue) Enqueue(ctx context.Context, from string, to []string, r io.Reader) (string, error) {
	if from != "" {
		if err := address.CheckSender(from); err != nil {
			return "", fmt.Errorf("enqueue: %w", err)
		}
	}
	var rcpts []string
	seen := map[string]bool{}
	for _, t := range to {
		a, err := address.Parse(t)
		if err != nil {
			return "", fmt.Errorf("enqueue: recipient: %w", err)
		}
		if !seen[a.Key()] {
			seen[a.Key()] = true
			rcpts = append(rcpts, a.String())
		}
	}
	if len(rcpts) == 0 {
		return "", errors.New("enqueue: no recipients")
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("enqueue: %w", err)
	}
	id, err := q.store(from, rcpts, func(w io.Writer) (*bodyWriter, error) {
		bw := newBodyWriter(w)
		_, err := copyBody(bw, r)
		return bw, err
	}, nil)
	if err != nil {
		return "", fmt.Errorf("enqueue: %w", err)
	}
	q.log.Info("queued", "event", "queued", "queue_id", id, "from", from, "rcpts", rcpts)
	return id, nil
}

// store writes a new message durably, then commits its record together
// with whatever also does in the same transaction (marking recipients of
// another message notified when this one is their bounce).
func (q *Queue) store(from string, rcpts []string, fill func(io.Writer) (*bodyWriter, error), also func(tx *bolt.Tx) error) (string, error) {
	id := newID()
	var bw *bodyWriter
	dir := q.shardDir(id)
	err := durable.WriteFile(dir, id, 0o600, q.shards[dir], func(w io.Writer) error {
		var err error
		bw, err = fill(w)
		return err
	})
	if err != nil {
		return "", err
	}
	now := time.Now()
	rec := &record{V: recordVersion, ID: id, From: from, Created: now, Size: bw.n, CRC: bw.crc.Sum32(),
		Body8: bw.eightBit, UTF8Hdr: bw.utf8Hdr}
	for _, rc := range rcpts {
		rec.Rcpts = append(rec.Rcpts, rcptState{Addr: rc, State: StatePending, Next: now})
	}
	err = q.commit.do(func(tx *bolt.Tx) error {
		if also != nil {
			if err := also(tx); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMsgs).Put([]byte(id), rec.encode())
	})
	if err != nil {
		os.Remove(q.bodyPath(id))
		return "", fmt.Errorf("commit queue record: %w", err)
	}
	q.sched.set(id, now)
	return id, nil
}

// get reads a record; a missing one is ErrNotFound.
func (q *Queue) get(id string) (*record, error) {
	var rec *record
	err := q.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMsgs).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		var err error
		rec, err = decodeRecord(v)
		return err
	})
	return rec, err
}

// update applies fn to a stored record and commits it; a record with
// nothing left to do is deleted in the same transaction (its body file is
// the caller's to remove), which spares the common case a second commit.
func (q *Queue) update(id string, fn func(rec *record) error) (*record, error) {
	var out *record
	err := q.commit.do(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMsgs)
		v := b.Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		rec, err := decodeRecord(v)
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
		out = rec
		if rec.done() {
			return b.Delete([]byte(id))
		}
		return b.Put([]byte(id), rec.encode())
	})
	return out, err
}

// heldRecord is what the queue keeps of a message it set aside.
type heldRecord struct {
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
	Raw    []byte    `json:"raw"` // the record as it was stored
}

// setAside moves a message the queue cannot handle (a corrupt record or
// body file) out of the way, so that the rest of the queue goes on. Its
// body file stays for an administrator to look at; `queue drop` removes
// both.
func (q *Queue) setAside(id string, reason error) {
	q.sched.remove(id)
	q.log.Error("message set aside", "event", "held", "queue_id", id, "err", reason)
	err := q.db.Update(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketMsgs).Get([]byte(id))
		h := heldRecord{Reason: reason.Error(), Time: time.Now(), Raw: append([]byte(nil), raw...)}
		if err := tx.Bucket(bucketHeld).Put([]byte(id), mustJSON(h)); err != nil {
			return err
		}
		return tx.Bucket(bucketMsgs).Delete([]byte(id))
	})
	if err != nil {
		q.log.Error("could not set message aside", "queue_id", id, "err", err)
	}
}

// Run delivers queued messages until ctx ends, with at most
// Options.Concurrency deliveries at once. When ctx ends it starts no new
// attempt and gives those under way Options.ShutdownGrace to finish (so a
// transaction past its DATA is not cut between the final dot and the
// reply, which would send it twice); then it cancels them. An attempt cut
// short is not counted, and its recipients stay pending for the next
// start. Run must not be called twice at once.
func (q *Queue) Run(ctx context.Context) error {
	work := make(chan string)
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var wg sync.WaitGroup
	for range q.opts.Concurrency {
		wg.Go(func() {
			for id := range work {
				q.process(workCtx, id)
			}
		})
	}
	defer func() {
		close(work)
		finished := make(chan struct{})
		go func() {
			wg.Wait()
			close(finished)
		}()
		grace := time.NewTimer(q.opts.ShutdownGrace)
		select {
		case <-finished:
		case <-grace.C:
			cancelWork()
			<-finished
		}
		grace.Stop()
		// A Transport may keep sessions open between messages.
		if c, ok := q.opts.Transport.(io.Closer); ok {
			c.Close()
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		id, wait := q.sched.due(time.Now())
		if id != "" {
			select {
			case work <- id:
				continue
			case <-ctx.Done():
				q.sched.done(id, time.Now())
				return nil
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-q.sched.wake:
		case <-timer.C:
		}
	}
}
