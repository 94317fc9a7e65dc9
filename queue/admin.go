package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailroom/internal/durable"
)

// Info describes a queued message for `mailroom queue list`.
type Info struct {
	ID      string     `json:"id"`
	From    string     `json:"from"`
	Created time.Time  `json:"created"`
	Size    int64      `json:"size"`
	Rcpts   []RcptInfo `json:"rcpts"`
	// Held is set for a message set aside (corrupt record or body); Reason
	// says why. Such a message is not retried; `queue drop` removes it.
	Held   bool   `json:"held,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// RcptInfo is one recipient's state.
type RcptInfo struct {
	Addr      string    `json:"addr"`
	State     State     `json:"state"`
	Attempts  int       `json:"attempts"`
	Next      time.Time `json:"next"`
	LastError string    `json:"last_error,omitempty"`
}

// List returns every message in the queue, oldest first, held ones last.
func (q *Queue) List() ([]Info, error) {
	var out []Info
	err := q.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMsgs).ForEach(func(k, v []byte) error {
			rec, err := decodeRecord(v)
			if err != nil {
				out = append(out, Info{ID: string(k), Held: true, Reason: err.Error()})
				return nil
			}
			out = append(out, infoOf(rec))
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketHeld).ForEach(func(k, v []byte) error {
			var h heldRecord
			if err := json.Unmarshal(v, &h); err != nil {
				// Still listed, so that `queue drop` can remove it.
				h.Reason = fmt.Sprintf("unreadable held record: %v", err)
			}
			inf := Info{ID: string(k), Created: h.Time}
			if rec, err := decodeRecord(h.Raw); err == nil {
				inf = infoOf(rec)
			}
			inf.Held, inf.Reason = true, h.Reason
			out = append(out, inf)
			return nil
		})
	})
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Held != out[j].Held {
			return !out[i].Held
		}
		return out[i].Created.Before(out[j].Created)
	})
	return out, err
}

func infoOf(rec *record) Info {
	inf := Info{ID: rec.ID, From: rec.From, Created: rec.Created, Size: rec.Size}
	for _, rc := range rec.Rcpts {
		inf.Rcpts = append(inf.Rcpts, RcptInfo{Addr: rc.Addr, State: rc.State, Attempts: rc.Attempts,
			Next: rc.Next, LastError: rc.LastError})
	}
	return inf
}

// Flush makes every pending recipient due now and returns how many
// messages that concerns. The attempts happen in Run.
func (q *Queue) Flush() (int, error) {
	now := time.Now()
	err := q.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMsgs)
		type kv struct{ k, v []byte }
		var changed []kv
		if err := b.ForEach(func(k, v []byte) error {
			rec, err := decodeRecord(v)
			if err != nil {
				return nil
			}
			dirty := false
			for i := range rec.Rcpts {
				if rc := &rec.Rcpts[i]; rc.State == StatePending && rc.Next.After(now) {
					rc.Next, dirty = now, true
				}
			}
			if dirty {
				changed = append(changed, kv{append([]byte(nil), k...), rec.encode()})
			}
			return nil
		}); err != nil {
			return err
		}
		for _, c := range changed {
			if err := b.Put(c.k, c.v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("flush: %w", err)
	}
	n := q.sched.flush(now)
	q.log.Info("queue flushed", "messages", n)
	return n, nil
}

// Drop removes a message, queued or held, without notifying anybody.
func (q *Queue) Drop(id string) error {
	if !validID(id) {
		return fmt.Errorf("%q: %w", id, ErrNotFound)
	}
	found := false
	q.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketMsgs).Get([]byte(id)) != nil || tx.Bucket(bucketHeld).Get([]byte(id)) != nil
		return nil
	})
	if !found {
		return fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	if err := q.remove(id); err != nil {
		return fmt.Errorf("drop %s: %w", id, err)
	}
	q.log.Info("message dropped", "event", "dropped", "queue_id", id)
	return nil
}

// Orphans lists the body files in dir (a queue directory) that no record
// in db names. After a damaged database was salvaged these are queued
// messages whose envelopes were lost, which Open would delete as left by
// a crash; repair moves them aside first. It writes nothing.
func Orphans(db *bolt.DB, dir string) ([]string, error) {
	known := map[string]bool{}
	if err := db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMsgs, bucketHeld} {
			if b := tx.Bucket(name); b != nil {
				if err := b.ForEach(func(k, _ []byte) error {
					known[string(k)] = true
					return nil
				}); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("queue: read records: %w", err)
	}
	var out []string
	for _, c := range idAlphabet {
		d := filepath.Join(dir, string(c))
		entries, err := os.ReadDir(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("queue: %w", err)
		}
		for _, e := range entries {
			if n := e.Name(); e.Type().IsRegular() && !strings.HasPrefix(n, durable.TempPrefix) && !known[n] {
				out = append(out, filepath.Join(d, n))
			}
		}
	}
	return out, nil
}

// Reconcile makes a copy of the queue agree with a copy of the database
// taken before it, as a backup takes them: a record whose body is not in
// dir is deleted from db (the message finished after db was copied), and
// a body that no record names is deleted from dir (it was enqueued
// after). It returns how many of each it removed. Only for copies: a
// running queue's files are its own.
func Reconcile(db *bolt.DB, dir string) (records, bodies []string, err error) {
	bodies, err = Orphans(db, dir)
	if err != nil {
		return nil, nil, err
	}
	for _, f := range bodies {
		if err := os.Remove(f); err != nil {
			return nil, nil, fmt.Errorf("queue: %w", err)
		}
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMsgs, bucketHeld} {
			b := tx.Bucket(name)
			if b == nil {
				continue
			}
			var gone [][]byte
			if err := b.ForEach(func(k, _ []byte) error {
				id := string(k)
				if id == "" || strings.ContainsAny(id, "/\x00") {
					gone = append(gone, k)
				} else if _, err := os.Stat(bodyPathIn(dir, id)); errors.Is(err, fs.ErrNotExist) {
					gone = append(gone, k)
				}
				return nil
			}); err != nil {
				return err
			}
			for _, k := range gone {
				if err := b.Delete(k); err != nil {
					return err
				}
				records = append(records, string(k))
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("queue: %w", err)
	}
	return records, bodies, nil
}

// IDs lists the messages recorded in db, held ones too.
func IDs(db *bolt.DB) ([]string, error) {
	var ids []string
	err := db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMsgs, bucketHeld} {
			if b := tx.Bucket(name); b != nil {
				if err := b.ForEach(func(k, _ []byte) error {
					ids = append(ids, string(k))
					return nil
				}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return ids, err
}
