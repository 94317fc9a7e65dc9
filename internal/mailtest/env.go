package mailtest

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"golang.org/x/crypto/bcrypt"

	bolt "go.etcd.io/bbolt"

	"mailroom/account"
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
	dir := ShortTempDir(t)
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

// Messages returns the contents of the files in a mail home's Maildir
// new/ ("example.org/alice"), sorted by file name, which is delivery order
// for files mailroom wrote (the seconds and zero-padded microseconds lead).
func Messages(t testing.TB, mailRoot, home string) []string {
	t.Helper()
	dir := filepath.Join(mailRoot, home, "Maildir", "new")
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	var out []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// TmpFiles counts files left in a mail home's Maildir tmp/.
func TmpFiles(t testing.TB, mailRoot, home string) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(mailRoot, home, "Maildir", "tmp"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return len(entries)
}
