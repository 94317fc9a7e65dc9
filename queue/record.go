package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"mailroom/internal/address"
)

// recordVersion is written into every record; a reader refuses versions it
// does not know rather than guess.
const recordVersion = 1

// record is one queued message as stored in bbolt: the envelope, where the
// body is, and each recipient's state. The body itself is a file.
type record struct {
	V       int       `json:"v"`
	ID      string    `json:"id"`
	From    string    `json:"from"` // "" is the null sender <>
	Created time.Time `json:"created"`
	Size    int64     `json:"size"`  // bytes of the body file (CRLF line ends)
	CRC     uint32    `json:"crc"`   // CRC-32C of the body file
	Body8   bool      `json:"8bit"`  // the body has octets above 127
	UTF8Hdr bool      `json:"utf8h"` // the header has UTF-8 (RFC 6532)
	// Warned is set once the delay warning went out (RFC 5321 §4.5.4.1
	// suggests at most one).
	Warned bool        `json:"warned,omitempty"`
	Rcpts  []rcptState `json:"rcpts"`
}

// State is where a recipient of a queued message stands. A recipient
// moves from pending to sent, or to failed and then, once its sender was
// told (or there is nobody to tell), notified. A record whose recipients
// are all sent or notified is deleted. It is a type, not a bare string,
// so that `queue list` and the queue compare states the compiler checks;
// the stored and the control socket's JSON form is the string.
type State string

// The recipient states.
const (
	StatePending  State = "pending"
	StateSent     State = "sent"
	StateFailed   State = "failed"
	StateNotified State = "notified"
)

type rcptState struct {
	Addr     string    `json:"addr"`
	State    State     `json:"state"`
	Attempts int       `json:"attempts,omitempty"`
	Next     time.Time `json:"next"`
	// The last error, kept for `queue list` and the DSN.
	LastError string `json:"last_error,omitempty"`
	Status    string `json:"status,omitempty"`     // RFC 3463 code, "5.1.1"
	Diag      string `json:"diag,omitempty"`       // RFC 3464 Diagnostic-Code, "smtp; 550 ..."
	RemoteMTA string `json:"remote_mta,omitempty"` // "dns; mx.example.net"
	Expired   bool   `json:"expired,omitempty"`
}

// encode returns the stored form of r.
func (r *record) encode() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		// Only unsupported types fail to marshal, and record has none.
		panic(fmt.Sprintf("queue: encode record: %v", err))
	}
	return b
}

// errCorrupt marks stored data that cannot be used; such a message is set
// aside rather than retried.
var errCorrupt = errors.New("corrupt queue record")

// decodeRecord parses and checks a stored record: anything a later step
// would trip over (a bad id, an unknown state, a recipient that is not an
// address) is reported here, so the message is set aside once.
func decodeRecord(b []byte) (*record, error) {
	var r record
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the record", errCorrupt)
	}
	switch {
	case r.V != recordVersion:
		return nil, fmt.Errorf("%w: version %d, want %d", errCorrupt, r.V, recordVersion)
	case !validID(r.ID):
		return nil, fmt.Errorf("%w: bad id %q", errCorrupt, r.ID)
	case r.Size < 0:
		return nil, fmt.Errorf("%w: negative size", errCorrupt)
	case len(r.Rcpts) == 0:
		return nil, fmt.Errorf("%w: no recipients", errCorrupt)
	case r.Created.IsZero():
		return nil, fmt.Errorf("%w: no creation time", errCorrupt)
	}
	if r.From != "" {
		if _, err := address.Parse(r.From); err != nil {
			return nil, fmt.Errorf("%w: sender: %w", errCorrupt, err)
		}
	}
	for i, rc := range r.Rcpts {
		if _, err := address.Parse(rc.Addr); err != nil {
			return nil, fmt.Errorf("%w: recipient %d: %w", errCorrupt, i, err)
		}
		switch rc.State {
		case StatePending, StateSent, StateFailed, StateNotified:
		default:
			return nil, fmt.Errorf("%w: recipient %d: unknown state %q", errCorrupt, i, rc.State)
		}
		if rc.Attempts < 0 {
			return nil, fmt.Errorf("%w: recipient %d: negative attempts", errCorrupt, i)
		}
	}
	return &r, nil
}

// validID reports whether s can be a queue id, and so a file name: the
// ids newID makes, and nothing that could name another path.
func validID(s string) bool {
	if len(s) < 8 || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// done reports whether nothing is left to do for the record.
func (r *record) done() bool {
	for _, rc := range r.Rcpts {
		if rc.State == StatePending || rc.State == StateFailed {
			return false
		}
	}
	return true
}

// next is when the record needs attention again: the earliest next
// attempt of a pending recipient, or now if a failure is yet to be
// reported. The zero time means never.
func (r *record) next(now time.Time) time.Time {
	var t time.Time
	for _, rc := range r.Rcpts {
		switch rc.State {
		case StateFailed:
			return now
		case StatePending:
			if t.IsZero() || rc.Next.Before(t) {
				t = rc.Next
			}
		}
	}
	return t
}
