// Package account keeps the users of a mailroom installation: their
// addresses, password hashes and mail homes, in the "accounts" bucket of the
// shared bbolt database. It knows nothing of protocols or mail files; the
// protocol packages ask it "who is this?" and mda asks it "does this mailbox
// exist?".
package account

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/bcrypt"

	"mailroom/internal/address"
)

// Sentinel errors, tested with errors.Is.
var (
	ErrNotFound      = errors.New("no such account")
	ErrExists        = errors.New("account already exists")
	ErrForeignDomain = errors.New("domain is not one of the configured domains")
	ErrAuthFailed    = errors.New("authentication failed")
	ErrBadPassword   = errors.New("unacceptable password")
)

// Bucket is the top-level bucket of mailroom.db that holds the accounts.
// A database without it has never held any: that is how a new install is
// told from a database that lost everything.
const Bucket = "accounts"

var bucket = []byte(Bucket)

// Account is one user. Address keeps the spelling it was created with, which
// is what appears in headers; lookups are case-insensitive.
type Account struct {
	Address address.Address
	Created time.Time
}

// Home is the mail home relative to the mail root: "<domain>/<local>", with
// the local part in lower case so that every spelling of the address maps to
// the same directory.
func (a Account) Home() string {
	k := a.Address.Key()
	return a.Address.Domain + "/" + k[:len(k)-len(a.Address.Domain)-1]
}

type record struct {
	Address string    `json:"address"`
	Hash    []byte    `json:"hash"`
	Created time.Time `json:"created"`
}

// Options configure a Store.
type Options struct {
	// Domains are the local domains; accounts may only be created in them.
	Domains []string
	// BcryptCost is the bcrypt work factor; zero means bcrypt.DefaultCost.
	// Tests lower it to bcrypt.MinCost.
	BcryptCost int
}

// Store reads and writes accounts in a bbolt database. It is safe for
// concurrent use; bbolt serialises writers and lets readers run in parallel.
type Store struct {
	db *bolt.DB
	// domains is replaced whole by SetDomains (a SIGHUP) while lookups
	// read it.
	domains atomic.Pointer[[]string]
	cost    int
	// dummyHash is compared against when the user does not exist, so that a
	// failed login takes as long for an unknown user as for a wrong password.
	// It is made on first use: commands that never authenticate should not
	// pay for a bcrypt.
	dummyHash func() []byte
}

// Open prepares the accounts bucket in db.
func Open(db *bolt.DB, opts Options) (*Store, error) {
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		return nil, fmt.Errorf("create accounts bucket: %w", err)
	}
	cost := opts.BcryptCost
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	domains, err := normalizeDomains(opts.Domains)
	if err != nil {
		return nil, err
	}
	dummy := sync.OnceValue(func() []byte {
		h, _ := bcrypt.GenerateFromPassword([]byte("mailroom dummy password"), cost)
		return h
	})
	s := &Store{db: db, cost: cost, dummyHash: dummy}
	s.domains.Store(&domains)
	return s, nil
}

// SetDomains replaces the local domains (serve does on SIGHUP): accounts
// may be made in the new ones from then on. Existing accounts of a domain
// no longer listed stay as they are.
func (s *Store) SetDomains(list []string) error {
	domains, err := normalizeDomains(list)
	if err != nil {
		return err
	}
	s.domains.Store(&domains)
	return nil
}

func normalizeDomains(list []string) ([]string, error) {
	domains := make([]string, 0, len(list))
	for _, d := range list {
		nd, err := address.NormalizeDomain(d)
		if err != nil {
			return nil, fmt.Errorf("domain %q: %w", d, err)
		}
		domains = append(domains, nd)
	}
	return domains, nil
}

func (s *Store) isLocal(domain string) bool { return slices.Contains(*s.domains.Load(), domain) }

func (s *Store) parseLocal(addr string) (address.Address, error) {
	a, err := address.Parse(addr)
	if err != nil {
		return a, err
	}
	if !s.isLocal(a.Domain) {
		return a, fmt.Errorf("%s: %w (add %q to domains in the configuration; a running server takes it on SIGHUP)", addr, ErrForeignDomain, a.Domain)
	}
	return a, nil
}

func checkPassword(pw string) error {
	switch {
	case len(pw) == 0:
		return fmt.Errorf("%w: empty", ErrBadPassword)
	case len(pw) > 72:
		// bcrypt only looks at the first 72 bytes; refuse rather than
		// silently ignore the rest.
		return fmt.Errorf("%w: longer than 72 bytes", ErrBadPassword)
	case bytes.ContainsAny([]byte(pw), "\x00\r\n"):
		return fmt.Errorf("%w: contains NUL or a line break", ErrBadPassword)
	}
	return nil
}

// Add creates an account. The password is hashed with bcrypt; the clear text
// is never stored.
func (s *Store) Add(addr, password string) (Account, error) {
	a, err := s.parseLocal(addr)
	if err != nil {
		return Account{}, err
	}
	if err := checkPassword(password); err != nil {
		return Account{}, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.cost)
	if err != nil {
		return Account{}, fmt.Errorf("hash password: %w", err)
	}
	rec := record{Address: a.String(), Hash: hash, Created: time.Now().UTC().Truncate(time.Second)}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b.Get([]byte(a.Key())) != nil {
			return fmt.Errorf("%s: %w", a, ErrExists)
		}
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return b.Put([]byte(a.Key()), v)
	})
	if err != nil {
		return Account{}, err
	}
	return Account{Address: a, Created: rec.Created}, nil
}

// AddWithoutPassword creates an account that nobody can log in to until
// SetPassword gives it a password. Repair makes one for each mail home
// whose account was lost with a damaged database, so that its mail is
// still delivered (rather than refused as for an unknown user) meanwhile.
func (s *Store) AddWithoutPassword(addr string) (Account, error) {
	a, err := s.parseLocal(addr)
	if err != nil {
		return Account{}, err
	}
	rec := record{Address: a.String(), Created: time.Now().UTC().Truncate(time.Second)}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b.Get([]byte(a.Key())) != nil {
			return fmt.Errorf("%s: %w", a, ErrExists)
		}
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return b.Put([]byte(a.Key()), v)
	})
	if err != nil {
		return Account{}, err
	}
	return Account{Address: a, Created: rec.Created}, nil
}

// Scrub removes the account records that do not decode, as a salvaged
// database may hold (bbolt has no checksum on data), and returns their
// keys: otherwise List would fail on them for good.
func (s *Store) Scrub() ([]string, error) {
	var bad []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if err := b.ForEach(func(k, v []byte) error {
			if acct, _, err := decode(k, v); err != nil || acct.Address.Key() != string(k) {
				bad = append(bad, string(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range bad {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	return bad, err
}

// Import copies from src (another mailroom.db, such as a backup's) every
// account of the configured domains that this store lacks, password hash
// and all, and returns their addresses. Accounts present in both keep
// this store's record.
func (s *Store) Import(src *bolt.DB) ([]string, error) {
	type found struct{ key, value []byte }
	var in []found
	if err := src.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			acct, _, err := decode(k, v)
			if err == nil && acct.Address.Key() == string(k) && s.isLocal(acct.Address.Domain) {
				in = append(in, found{bytes.Clone(k), bytes.Clone(v)})
			}
			return nil
		})
	}); err != nil {
		return nil, fmt.Errorf("read accounts to import: %w", err)
	}
	var added []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		for _, f := range in {
			if b.Get(f.key) != nil {
				continue
			}
			if err := b.Put(f.key, f.value); err != nil {
				return err
			}
			added = append(added, string(f.key))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("import accounts: %w", err)
	}
	return added, nil
}

// SetPassword replaces the password of an existing account.
func (s *Store) SetPassword(addr, password string) error {
	a, err := address.Parse(addr)
	if err != nil {
		return err
	}
	if err := checkPassword(password); err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.cost)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		rec, err := get(b, a.Key())
		if err != nil {
			return err
		}
		rec.Hash = hash
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return b.Put([]byte(a.Key()), v)
	})
}

// Delete removes an account. Its mail home is left on disk: deleting mail is
// an administrator's decision, not a side effect.
func (s *Store) Delete(addr string) error {
	a, err := address.Parse(addr)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b.Get([]byte(a.Key())) == nil {
			return fmt.Errorf("%s: %w", a, ErrNotFound)
		}
		return b.Delete([]byte(a.Key()))
	})
}

// List returns every account, sorted by address.
func (s *Store) List() ([]Account, error) {
	var out []Account
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			acct, _, err := decode(k, v)
			if err != nil {
				return err
			}
			out = append(out, acct)
			return nil
		})
	})
	return out, err
}

// Lookup finds the account for addr, ignoring case. The caller is expected
// to have removed any recipient_delimiter extension.
func (s *Store) Lookup(ctx context.Context, addr address.Address) (Account, error) {
	if err := ctx.Err(); err != nil {
		return Account{}, err
	}
	var acct Account
	err := s.db.View(func(tx *bolt.Tx) error {
		rec, err := get(tx.Bucket(bucket), addr.Key())
		if err != nil {
			return err
		}
		acct, err = rec.account()
		return err
	})
	return acct, err
}

// Authenticate checks a password. It takes the same time whether or not the
// account exists, and returns ErrAuthFailed for both cases so that callers
// cannot leak which one it was.
func (s *Store) Authenticate(addr, password string) (Account, error) {
	var (
		acct Account
		hash []byte
		ok   = 0
	)
	if a, err := address.Parse(addr); err == nil {
		err := s.db.View(func(tx *bolt.Tx) error {
			rec, err := get(tx.Bucket(bucket), a.Key())
			if err != nil {
				return err
			}
			acct, err = rec.account()
			hash = rec.Hash
			return err
		})
		switch {
		case err == nil && len(hash) > 0:
			ok = 1
		case err != nil && !errors.Is(err, ErrNotFound):
			return Account{}, err
		}
	}
	if len(hash) == 0 {
		// No account, or one made without a password: compare against
		// a hash all the same, so that the answer takes as long.
		hash = s.dummyHash()
	}
	match := 0
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil {
		match = 1
	}
	if subtle.ConstantTimeEq(int32(ok&match), 1) != 1 {
		return Account{}, ErrAuthFailed
	}
	return acct, nil
}

func get(b *bolt.Bucket, key string) (record, error) {
	v := b.Get([]byte(key))
	if v == nil {
		return record{}, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	var rec record
	if err := json.Unmarshal(v, &rec); err != nil {
		return record{}, fmt.Errorf("decode account %s: %w", key, err)
	}
	return rec, nil
}

func decode(k, v []byte) (Account, record, error) {
	var rec record
	if err := json.Unmarshal(v, &rec); err != nil {
		return Account{}, rec, fmt.Errorf("decode account %s: %w", k, err)
	}
	acct, err := rec.account()
	return acct, rec, err
}

func (r record) account() (Account, error) {
	a, err := address.Parse(r.Address)
	if err != nil {
		return Account{}, fmt.Errorf("stored account: %w", err)
	}
	return Account{Address: a, Created: r.Created}, nil
}
