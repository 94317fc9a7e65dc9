package sievestore

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketSieve holds, per mail home, what scripts must remember between
// deliveries: vacation replies sent (RFC 5230 §4.1: one per sender per
// period) and duplicate ids (RFC 7352). Keys are
// "<home>\x00<kind>\x00<key>", values the expiry in Unix seconds.
var bucketSieve = []byte("sieve")

// Memory remembers, durably in mailroom.db, which vacation replies were
// sent and which ids were seen, until each expires.
type Memory struct {
	db  *bolt.DB
	now func() time.Time
}

// NewMemory returns the memory in db, making its bucket.
func NewMemory(db *bolt.DB) (*Memory, error) {
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketSieve)
		return err
	}); err != nil {
		return nil, fmt.Errorf("sieve memory: %w", err)
	}
	return &Memory{db: db, now: time.Now}, nil
}

// Kinds of memory.
const (
	Vacation  = "v"
	Duplicate = "d"
)

func memKey(home, kind, key string) []byte { return []byte(home + "\x00" + kind + "\x00" + key) }

// Seen reports whether key of that kind is remembered for home and has
// not expired.
func (m *Memory) Seen(ctx context.Context, home, kind, key string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var seen bool
	err := m.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSieve).Get(memKey(home, kind, key))
		seen = len(v) == 8 && int64(binary.BigEndian.Uint64(v)) > m.now().Unix()
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("sieve memory: %w", err)
	}
	return seen, nil
}

// Remember records keys of that kind for home, each for its period, in
// one transaction, and drops some expired records.
func (m *Memory) Remember(ctx context.Context, home, kind string, keys map[string]time.Duration) error {
	if len(keys) == 0 {
		return nil
	}
	now := m.now()
	err := m.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSieve)
		for k, d := range keys {
			v := binary.BigEndian.AppendUint64(nil, uint64(now.Add(d).Unix()))
			if err := b.Put(memKey(home, kind, k), v); err != nil {
				return err
			}
		}
		return sweep(b, now, home)
	})
	if err != nil {
		return fmt.Errorf("sieve memory: %w", err)
	}
	return nil
}

// sweep removes the expired records of home, at most a few hundred at
// a time, so that the memory does not grow without end.
func sweep(b *bolt.Bucket, now time.Time, home string) error {
	prefix := []byte(home + "\x00")
	var expired [][]byte
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && len(expired) < 256 && hasPrefix(k, prefix); k, v = c.Next() {
		if len(v) != 8 || int64(binary.BigEndian.Uint64(v)) <= now.Unix() {
			expired = append(expired, append([]byte(nil), k...))
		}
	}
	for _, k := range expired {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func hasPrefix(b, p []byte) bool { return len(b) >= len(p) && string(b[:len(p)]) == string(p) }
