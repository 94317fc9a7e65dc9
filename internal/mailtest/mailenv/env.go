// Package mailenv builds an in-process delivery stack for tests of the
// packages above mda (accounts, Maildir store, mda, and LMTP or SMTP
// servers on 127.0.0.1:0). It is apart from mailtest so that mailtest
// imports no mailroom package and every package's own tests can use it.
package mailenv

import (
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"

	bolt "go.etcd.io/bbolt"

	"mailroom/account"
	"mailroom/internal/mailtest"
	"mailroom/mailbox/maildir"
	"mailroom/mda"
)

// Env is an in-process delivery stack (accounts, Maildir store, mda) in a
// temporary data directory, for tests of the packages above mda.
type Env struct {
	Dir      string // data_dir
	MailRoot string
	DB       *bolt.DB
	Accounts *account.Store
	Store    *maildir.Store
	MDA      *mda.Deliverer
}

// EnvOptions adjust NewEnv.
type EnvOptions struct {
	Domains         []string // default ["example.org"]
	Users           []string // accounts to create, password "secret"
	Delimiter       string   // default "+"
	MaxMessageBytes int64
	// Adjust changes the mda options before the Deliverer is built
	// (aliases, .forward, a Forwarder...).
	Adjust func(*mda.Options)
}

// NewEnv builds an Env; everything is closed at cleanup.
func NewEnv(t testing.TB, opts EnvOptions) *Env {
	t.Helper()
	if opts.Domains == nil {
		opts.Domains = []string{"example.org"}
	}
	if opts.Delimiter == "" {
		opts.Delimiter = "+"
	}
	dir := mailtest.ShortTempDir(t)
	db, err := bolt.Open(filepath.Join(dir, "mailroom.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	accts, err := account.Open(db, account.Options{Domains: opts.Domains, BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range opts.Users {
		if _, err := accts.Add(u, "secret"); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(dir, "mail")
	store, err := maildir.Open(maildir.Options{Root: root, Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	mo := mda.Options{
		Hostname:        "mx.test",
		Domains:         opts.Domains,
		Delimiter:       opts.Delimiter,
		Accounts:        accts,
		Store:           store,
		MailRoot:        root,
		ForwardFiles:    true,
		SpoolDir:        dir,
		MaxMessageBytes: opts.MaxMessageBytes,
	}
	if opts.Adjust != nil {
		opts.Adjust(&mo)
	}
	d, err := mda.New(mo)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Dir: dir, MailRoot: root, DB: db, Accounts: accts, Store: store, MDA: d}
}
