package account

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/bcrypt"

	"mailroom/internal/address"
)

func newStore(t *testing.T) (*Store, *bolt.DB) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "m.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := Open(db, Options{Domains: []string{"Example.org"}, BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

func TestAddLookupAuthenticate(t *testing.T) {
	s, _ := newStore(t)
	if _, err := s.Add("Alice@EXAMPLE.org", "correct horse"); err != nil {
		t.Fatal(err)
	}
	for _, spelling := range []string{"alice@example.org", "ALICE@Example.Org"} {
		a, _ := address.Parse(spelling)
		acct, err := s.Lookup(t.Context(), a)
		if err != nil {
			t.Fatalf("Lookup(%s): %v", spelling, err)
		}
		if acct.Address.String() != "Alice@example.org" || acct.Home() != "example.org/alice" {
			t.Fatalf("Lookup(%s) = %+v home %s", spelling, acct, acct.Home())
		}
	}
	if _, err := s.Authenticate("alice@example.org", "correct horse"); err != nil {
		t.Fatalf("good password refused: %v", err)
	}
	for _, c := range []struct{ user, pw string }{
		{"alice@example.org", "wrong"},
		{"alice@example.org", ""},
		{"bob@example.org", "correct horse"},
		{"not an address", "x"},
	} {
		if _, err := s.Authenticate(c.user, c.pw); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("Authenticate(%q, %q) = %v, want ErrAuthFailed", c.user, c.pw, err)
		}
	}
}

func TestAddErrors(t *testing.T) {
	s, _ := newStore(t)
	if _, err := s.Add("alice@example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		addr, pw string
		want     error
	}{
		{"ALICE@example.org", "pw", ErrExists},
		{"bob@elsewhere.net", "pw", ErrForeignDomain},
		{"../bob@example.org", "pw", address.ErrInvalid},
		{"bob@example.org", "", ErrBadPassword},
		{"bob@example.org", "a\nb", ErrBadPassword},
		{"bob@example.org", string(bytes.Repeat([]byte("x"), 73)), ErrBadPassword},
	}
	for _, c := range cases {
		if _, err := s.Add(c.addr, c.pw); !errors.Is(err, c.want) {
			t.Errorf("Add(%q) = %v, want %v", c.addr, err, c.want)
		}
	}
}

func TestPasswdDeleteList(t *testing.T) {
	s, _ := newStore(t)
	s.Add("bob@example.org", "one")
	s.Add("alice@example.org", "one")
	if err := s.SetPassword("Bob@example.org", "two"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("bob@example.org", "one"); err == nil {
		t.Fatal("old password still works")
	}
	if _, err := s.Authenticate("bob@example.org", "two"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword("carol@example.org", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetPassword unknown: %v", err)
	}
	list, err := s.List()
	if err != nil || len(list) != 2 || list[0].Address.Local != "alice" || list[1].Address.Local != "bob" {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if err := s.Delete("bob@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("bob@example.org"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v", err)
	}
	a, _ := address.Parse("bob@example.org")
	if _, err := s.Lookup(t.Context(), a); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup after Delete: %v", err)
	}
}

// TestNoClearPassword checks that the stored record holds a hash, never
// the password itself.
func TestNoClearPassword(t *testing.T) {
	s, db := newStore(t)
	s.Add("alice@example.org", "hunter2-unique-marker")
	db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			if bytes.Contains(v, []byte("hunter2-unique-marker")) {
				t.Fatalf("clear-text password stored: %s", v)
			}
			return nil
		})
	})
}

// TestWithoutPassword: an account made again by repair receives mail
// (Lookup finds it) but nobody can log in until a password is set.
func TestWithoutPassword(t *testing.T) {
	s, _ := newStore(t)
	if _, err := s.AddWithoutPassword("bob@example.org"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddWithoutPassword("bob@example.org"); !errors.Is(err, ErrExists) {
		t.Fatalf("second AddWithoutPassword: %v, want ErrExists", err)
	}
	a, _ := address.Parse("bob@example.org")
	if _, err := s.Lookup(t.Context(), a); err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	for _, pw := range []string{"", "x", "mailroom dummy password"} {
		if _, err := s.Authenticate("bob@example.org", pw); !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("Authenticate(%q) without a password: %v, want ErrAuthFailed", pw, err)
		}
	}
	if err := s.SetPassword("bob@example.org", "now one"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("bob@example.org", "now one"); err != nil {
		t.Fatalf("Authenticate after SetPassword: %v", err)
	}
}

// TestScrubAndImport: records that do not decode are dropped; accounts
// missing here are taken from another database with their hashes, and
// those present keep this store's.
func TestScrubAndImport(t *testing.T) {
	s, db := newStore(t)
	s.Add("alice@example.org", "alice here")
	db.Update(func(tx *bolt.Tx) error {
		tx.Bucket(bucket).Put([]byte("garbage@example.org"), []byte("\x00\x01not json"))
		return tx.Bucket(bucket).Put([]byte("wrong@example.org"), []byte(`{"address":"other@example.org"}`))
	})
	bad, err := s.Scrub()
	if err != nil || len(bad) != 2 {
		t.Fatalf("Scrub: %v %v, want the two bad records", bad, err)
	}
	if l, err := s.List(); err != nil || len(l) != 1 {
		t.Fatalf("List after Scrub: %v %v", l, err)
	}

	backup, bdb := newStore(t)
	backup.Add("alice@example.org", "old alice")
	backup.Add("carol@example.org", "carol's")
	bdb.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte("x@other.example"), []byte(`{"address":"x@other.example"}`))
	})
	added, err := s.Import(bdb)
	if err != nil || len(added) != 1 || added[0] != "carol@example.org" {
		t.Fatalf("Import: %v %v, want carol only", added, err)
	}
	if _, err := s.Authenticate("carol@example.org", "carol's"); err != nil {
		t.Errorf("imported account lost its password: %v", err)
	}
	if _, err := s.Authenticate("alice@example.org", "alice here"); err != nil {
		t.Errorf("existing account was overwritten: %v", err)
	}
}

// TestSetDomains: accounts can be made in a domain added while running,
// and no longer in one removed; existing accounts stay.
func TestSetDomains(t *testing.T) {
	s, _ := newStore(t)
	if _, err := s.Add("a@example.net", "pw"); !errors.Is(err, ErrForeignDomain) || !strings.Contains(err.Error(), "SIGHUP") {
		t.Fatalf("Add in an unknown domain: %v", err)
	}
	if err := s.SetDomains([]string{"example.org", "Example.NET"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add("a@example.net", "pw"); err != nil {
		t.Fatalf("Add after SetDomains: %v", err)
	}
	s.SetDomains([]string{"example.org"})
	if _, err := s.Add("b@example.net", "pw"); !errors.Is(err, ErrForeignDomain) {
		t.Fatalf("Add in a removed domain: %v", err)
	}
	if _, err := s.Authenticate("a@example.net", "pw"); err != nil {
		t.Fatalf("an account of a removed domain: %v", err)
	}
	if err := s.SetDomains([]string{"bad domain"}); err == nil {
		t.Fatal("SetDomains took a bad domain")
	}
}
