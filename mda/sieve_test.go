package mda_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/mailenv"
	"mailroom/internal/srs"
	"mailroom/mda"
	"mailroom/mda/alias"
	"mailroom/sieve"
	"mailroom/sieve/sievestore"
)

// sieveEnv is a delivery stack with Sieve: scripts in the mail homes, the
// memory in mailroom.db, and a forwarder that records what it gets.
type sieveEnv struct {
	*mailenv.Env
	fwd     *fakeForwarder
	scripts *sievestore.Store
	log     *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newSieveEnv(t *testing.T, before ...string) *sieveEnv {
	t.Helper()
	return newSieveEnvWith(t, nil, before...)
}

// newSieveEnvWith is newSieveEnv with mda's Options changed by mod.
func newSieveEnvWith(t *testing.T, mod func(*mda.Options), before ...string) *sieveEnv {
	t.Helper()
	e := &sieveEnv{fwd: &fakeForwarder{}, log: &lockedBuffer{}}
	var paths []string
	for i, src := range before {
		p := filepath.Join(t.TempDir(), "before"+string(rune('0'+i))+".sieve")
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	e.Env = mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"alice@example.org", "bob@example.org"}})
	var err error
	e.scripts, err = sievestore.New(sievestore.Options{MailRoot: e.MailRoot, Before: paths, Separator: "+"})
	if err != nil {
		t.Fatal(err)
	}
	mem, err := sievestore.NewMemory(e.DB)
	if err != nil {
		t.Fatal(err)
	}
	// The Deliverer again, with Sieve and the forwarder.
	o := mda.Options{
		Hostname: "mx.test", Domains: []string{"example.org"}, Delimiter: "+",
		Accounts: e.Accounts, Store: e.Store, MailRoot: e.MailRoot, SpoolDir: e.Dir,
		Forwarder: e.fwd, Logger: slog.New(slog.NewTextHandler(e.log, nil)),
		Sieve: mda.SieveOptions{Scripts: e.scripts, Memory: mem},
	}
	if mod != nil {
		mod(&o)
	}
	e.MDA, err = mda.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *sieveEnv) script(t *testing.T, home, src string) {
	t.Helper()
	if err := e.scripts.Put(home, "main", []byte(src)); err != nil {
		t.Fatal(err)
	}
	if err := e.scripts.SetActive(home, "main"); err != nil {
		t.Fatal(err)
	}
}

// deliver delivers msg from sender to rcpts over the per-recipient path
// (LMTP's) and returns the results.
func (e *sieveEnv) deliver(t *testing.T, sender, msg string, rcpts ...string) []error {
	t.Helper()
	ctx := context.Background()
	txn, err := e.MDA.Begin(ctx, sender, mda.Info{Proto: "LMTP"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rcpts {
		if err := txn.AddRcpt(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	res, err := txn.Deliver(ctx, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// folder returns the files of a folder (new/ and cur/ together), with
// their names: flags live in the names.
func folder(t *testing.T, root, home, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, sub := range []string{"new", "cur"} {
		p := filepath.Join(root, home, "Maildir", dir, sub)
		ents, err := os.ReadDir(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range ents {
			b, err := os.ReadFile(filepath.Join(p, en.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out[sub+"/"+en.Name()] = string(b)
		}
	}
	return out
}

const aliceHome = "example.org/alice"

const sieveMsg = "From: Carol <carol@remote.example>\r\nTo: alice@example.org\r\nSubject: Hello\r\nMessage-ID: <m1@remote.example>\r\n\r\nHi\r\n"

func TestSieveFileInto(t *testing.T) {
	e := newSieveEnv(t)
	e.script(t, aliceHome, `require ["fileinto", "mailbox", "imap4flags"];
if header :contains "subject" "Hello" { fileinto :create :flags ["\\Seen", "$work"] "Lists/go"; }`)
	if res := e.deliver(t, "carol@remote.example", sieveMsg, "alice@example.org"); res[0] != nil {
		t.Fatal(res[0])
	}
	if n := len(mailtest.Messages(t, e.MailRoot, aliceHome)); n != 0 {
		t.Errorf("INBOX has %d messages, want none", n)
	}
	files := folder(t, e.MailRoot, aliceHome, ".Lists.go")
	if len(files) != 1 {
		t.Fatalf("Lists/go holds %v", files)
	}
	for name, body := range files {
		if !strings.HasPrefix(name, "cur/") || !strings.HasSuffix(name, ":2,Sa") {
			t.Errorf("file %s: want cur/ with \\Seen and the first keyword's letter", name)
		}
		if !strings.HasPrefix(body, "Return-Path: <carol@remote.example>\nX-Original-To: alice@example.org\nDelivered-To: alice@example.org\n") {
			t.Errorf("the filed copy lacks the trace headers:\n%s", body)
		}
	}
	kw, _ := os.ReadFile(filepath.Join(e.MailRoot, aliceHome, "Maildir", ".Lists.go", "dovecot-keywords"))
	if string(kw) != "0 $work\n" {
		t.Errorf("dovecot-keywords %q", kw)
	}
}

// TestSieveKeeps covers the ways a script ends in INBOX: a folder that
// does not exist (without :create), a script that does not compile, one
// that fails as it runs. The log names the script, line and column.
func TestSieveKeeps(t *testing.T) {
	redirects := "redirect \"a@x.example\";\nredirect \"b@x.example\";\nredirect \"c@x.example\";\nredirect \"d@x.example\";\n  redirect \"e@x.example\";"
	cases := []struct {
		name, src, log string
		helper         string // a script "helper" that src may include
	}{
		{"missing folder", "require \"fileinto\";\nif true {\n  fileinto \"Nope\";\n}", "folder=Nope script=main line=3 col=3", ""},
		{"bad folder name", `require "fileinto"; fileinto "a.b";`, "event=sieve_fileinto_failed folder=a.b script=main line=1 col=21", ""},
		{"runtime error", redirects, "script=main line=5 col=3", ""},
		{"runtime error in an included script", "require \"include\";\ninclude \"helper\";", "script=helper line=5 col=3 included_from=main:2:1", redirects},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newSieveEnv(t)
			if c.helper != "" {
				if err := e.scripts.Put(aliceHome, "helper", []byte(c.helper)); err != nil {
					t.Fatal(err)
				}
			}
			e.script(t, aliceHome, c.src)
			if res := e.deliver(t, "carol@remote.example", sieveMsg, "alice@example.org"); res[0] != nil {
				t.Fatal(res[0])
			}
			if n := len(mailtest.Messages(t, e.MailRoot, aliceHome)); n != 1 {
				t.Errorf("INBOX has %d messages, want 1", n)
			}
			if !strings.Contains(e.log.String(), c.log) {
				t.Errorf("log lacks %q:\n%s", c.log, e.log)
			}
			if len(e.fwd.enqueued) != 0 {
				t.Errorf("a failed script still redirected: %+v", e.fwd.enqueued)
			}
		})
	}
	t.Run("broken on disk", func(t *testing.T) {
		e := newSieveEnv(t)
		e.script(t, aliceHome, "keep;")
		// An administrator's edit in a shell: not checked by Put.
		if err := os.WriteFile(filepath.Join(e.MailRoot, aliceHome, "sieve", "main.sieve"), []byte("keep;\n  discard"), 0o600); err != nil {
			t.Fatal(err)
		}
		if res := e.deliver(t, "carol@remote.example", sieveMsg, "alice@example.org"); res[0] != nil {
			t.Fatal(res[0])
		}
		if n := len(mailtest.Messages(t, e.MailRoot, aliceHome)); n != 1 {
			t.Errorf("INBOX has %d messages, want 1", n)
		}
		if !strings.Contains(e.log.String(), "script=main line=2 col=10") {
			t.Errorf("log lacks the place of the error:\n%s", e.log)
		}
	})
}

// TestSieveIncludeUnreadable: when the scripts cannot be read now (the
// store's error is no *sieve.Error: a disk error), that recipient is
// deferred with a temporary error instead of delivered without the
// user's rules, and the other is delivered; an included script that can
// never be read (a symbolic link loop) is the script's error: the
// message is kept in INBOX and the log says where.
func TestSieveIncludeUnreadable(t *testing.T) {
	var failing failingScripts
	e := newSieveEnvWith(t, func(o *mda.Options) {
		failing.SieveScripts = o.Sieve.Scripts
		o.Sieve.Scripts = &failing
	})
	e.script(t, aliceHome, `require "fileinto"; fileinto "Lists";`)
	failing.err = fmt.Errorf("sieve scripts of %s: include of personal script \"lib\": %w", aliceHome, syscall.EIO)
	res := e.deliver(t, "carol@remote.example", sieveMsg, "alice@example.org", "bob@example.org")
	var pe *mda.PermanentError
	if res[0] == nil || errors.As(res[0], &pe) {
		t.Errorf("alice's result %v, want a temporary error", res[0])
	}
	if res[1] != nil {
		t.Errorf("bob's result %v", res[1])
	}
	if n := len(mailtest.Messages(t, e.MailRoot, aliceHome)); n != 0 {
		t.Errorf("alice's INBOX has %d messages, want none (deferred)", n)
	}

	failing.err = nil
	if err := e.scripts.Put(aliceHome, "lib", []byte(`require "fileinto"; fileinto "Lists";`)); err != nil {
		t.Fatal(err)
	}
	e.script(t, aliceHome, "require \"include\";\ninclude \"lib\";")
	lib := filepath.Join(e.MailRoot, aliceHome, "sieve", "lib.sieve")
	os.Remove(lib)
	if err := os.Symlink("lib.sieve", lib); err != nil {
		t.Fatal(err)
	}
	if res := e.deliver(t, "carol@remote.example", sieveMsg, "alice@example.org"); res[0] != nil {
		t.Fatalf("with a symbolic link loop: %v, want delivered", res[0])
	}
	if n := len(mailtest.Messages(t, e.MailRoot, aliceHome)); n != 1 {
		t.Errorf("alice's INBOX has %d messages, want 1 (the implicit keep)", n)
	}
	if !strings.Contains(e.log.String(), "script=main line=2 col=9") {
		t.Errorf("the log lacks the include's place:\n%s", e.log)
	}
}

// failingScripts is a SieveScripts that fails with err for aliceHome
// while it is set.
type failingScripts struct {
	mda.SieveScripts
	err error
}

func (f *failingScripts) Sequence(ctx context.Context, home string) ([]*sieve.Script, error) {
	if f.err != nil && home == aliceHome {
		return nil, f.err
	}
	return f.SieveScripts.Sequence(ctx, home)
}

// TestSieveReject: reject refuses the message for that recipient alone
// (RFC 5429): the other is delivered.
func TestSieveReject(t *testing.T) {
	e := newSieveEnv(t)
	e.script(t, aliceHome, `require "reject"; reject "I do not take mail from you.";`)
	res := e.deliver(t, "carol@remote.example", sieveMsg, "alice@example.org", "bob@example.org")
	var pe *mda.PermanentError
	if !errors.As(res[0], &pe) || pe.Status != "5.7.1" || pe.Text != "I do not take mail from you." {
		t.Fatalf("alice's result %v, want a 5.7.1 with the reason", res[0])
	}
	if res[1] != nil {
		t.Errorf("bob's result %v", res[1])
	}
	if n := len(mailtest.Messages(t, e.MailRoot, aliceHome)); n != 0 {
		t.Errorf("alice got %d messages", n)
	}
	if n := mailtest.TmpFiles(t, e.MailRoot, aliceHome); n != 0 {
		t.Errorf("%d files left in tmp/", n)
	}
	// With one reply for everybody (SMTP) and another recipient who got
	// it, the sender learns of the refusal by a DSN.
	ctx := context.Background()
	txn, _ := e.MDA.Begin(ctx, "carol@remote.example", mda.Info{Proto: "ESMTP"})
	txn.AddRcpt(ctx, "alice@example.org")
	txn.AddRcpt(ctx, "bob@example.org")
	if err := txn.DeliverAll(ctx, strings.NewReader(sieveMsg)); err != nil {
		t.Fatal(err)
	}
	if len(e.fwd.bounces) != 1 || e.fwd.bounces[0][0].Status != "5.7.1" {
		t.Errorf("bounces %+v, want alice's refusal", e.fwd.bounces)
	}
}

func TestSieveRedirect(t *testing.T) {
	e := newSieveEnv(t)
	e.script(t, aliceHome, `require "copy"; redirect :copy "alice@elsewhere.example"; redirect "alice2@elsewhere.example";`)
	if res := e.deliver(t, "carol@remote.example", sieveMsg, "alice@example.org"); res[0] != nil {
		t.Fatal(res[0])
	}
	if len(e.fwd.enqueued) != 1 {
		t.Fatalf("enqueued %+v, want one copy for both addresses", e.fwd.enqueued)
	}
	f := e.fwd.enqueued[0]
	sort.Strings(f.to)
	if f.from != "carol@remote.example" || strings.Join(f.to, ",") != "alice2@elsewhere.example,alice@elsewhere.example" ||
		!strings.HasPrefix(f.body, "Delivered-To: alice@example.org\n") {
		t.Errorf("forwarded %+v", f)
	}
	if n := len(mailtest.Messages(t, e.MailRoot, aliceHome)); n != 0 {
		t.Errorf("INBOX has %d: a redirect without :copy cancels the keep", n)
	}
	// The copy comes back (the other side forwards it home): it is kept,
	// not sent round again.
	if res := e.deliver(t, "carol@remote.example", f.body, "alice@example.org"); res[0] != nil {
		t.Fatal(res[0])
	}
	if len(e.fwd.enqueued) != 1 {
		t.Errorf("the returning copy was redirected again")
	}
	if n := len(mailtest.Messages(t, e.MailRoot, aliceHome)); n != 1 {
		t.Errorf("INBOX has %d, want the returning copy", n)
	}
	// A queue that cannot take it: this recipient is retried, with no
	// copy left behind.
	e.fwd.err = errors.New("queue full")
	res := e.deliver(t, "carol@remote.example", sieveMsg, "alice@example.org", "bob@example.org")
	if res[0] == nil || res[1] != nil {
		t.Errorf("results %v, want alice temporary and bob delivered", res)
	}
	if n := mailtest.TmpFiles(t, e.MailRoot, aliceHome); n != 0 {
		t.Errorf("%d files left in tmp/", n)
	}
}

func TestSieveDiscardAndDuplicate(t *testing.T) {
	e := newSieveEnv(t)
	e.script(t, aliceHome, `require ["duplicate", "fileinto", "copy"]; if duplicate { discard; stop; } fileinto :copy "INBOX";`)
	for range 2 {
		if res := e.deliver(t, "carol@remote.example", sieveMsg, "alice@example.org"); res[0] != nil {
			t.Fatal(res[0])
		}
	}
	if n := len(mailtest.Messages(t, e.MailRoot, aliceHome)); n != 1 {
		t.Errorf("INBOX has %d messages, want the first only (the second is a duplicate)", n)
	}
}

// TestSieveVacation: one reply per sender per period, none to lists, with
// RFC 3834's header, through the queue with the null sender.
func TestSieveVacation(t *testing.T) {
	e := newSieveEnv(t)
	e.script(t, aliceHome, `require "vacation"; vacation :days 7 :subject "Away" "I am away until Monday.";`)
	if res := e.deliver(t, "carol@remote.example", sieveMsg, "alice@example.org"); res[0] != nil {
		t.Fatal(res[0])
	}
	if len(e.fwd.enqueued) != 1 {
		t.Fatalf("enqueued %+v, want the reply", e.fwd.enqueued)
	}
	r := e.fwd.enqueued[0]
	if r.from != "" || len(r.to) != 1 || r.to[0] != "carol@remote.example" {
		t.Errorf("reply envelope %q -> %q", r.from, r.to)
	}
	for _, want := range []string{"From: alice@example.org\r\n", "To: <carol@remote.example>\r\n", "Subject: Away\r\n",
		"In-Reply-To: <m1@remote.example>\r\n", "Auto-Submitted: auto-replied (vacation)\r\n", "\r\n\r\nI am away until Monday.\r\n"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("reply lacks %q:\n%s", want, r.body)
		}
	}
	if n := len(mailtest.Messages(t, e.MailRoot, aliceHome)); n != 1 {
		t.Errorf("INBOX has %d messages: vacation keeps the message", n)
	}
	e.deliver(t, "carol@remote.example", strings.Replace(sieveMsg, "m1@", "m2@", 1), "alice@example.org")
	if len(e.fwd.enqueued) != 1 {
		t.Errorf("a second reply within the period: %d", len(e.fwd.enqueued))
	}
	e.deliver(t, "dave@remote.example", "List-Id: <l.remote.example>\r\n"+sieveMsg, "alice@example.org")
	e.deliver(t, "", sieveMsg, "alice@example.org")
	if len(e.fwd.enqueued) != 1 {
		t.Errorf("a reply to a list or to <>: %d", len(e.fwd.enqueued))
	}
	e.deliver(t, "erin@remote.example", sieveMsg, "alice@example.org")
	if len(e.fwd.enqueued) != 2 {
		t.Errorf("no reply to a new sender: %d", len(e.fwd.enqueued))
	}
}

// TestSieveVacationOwnAddresses: the reply goes when the message is
// addressed to any address that delivers to the user (RFC 5230 §4.5):
// the account, an alias of it, a subaddress, :addresses; not when it
// names only others.
func TestSieveVacationOwnAddresses(t *testing.T) {
	aliases, err := alias.Parse(strings.NewReader("team: alice, bob\nbobs: bob\n"), "aliases")
	if err != nil {
		t.Fatal(err)
	}
	e := newSieveEnvWith(t, func(o *mda.Options) { o.Aliases = aliases })
	e.script(t, aliceHome, `require "vacation"; vacation :addresses "Old <alice.old@elsewhere.example>" "Away.";`)
	cases := []struct {
		to    string
		reply bool
	}{
		{"alice@example.org", true},
		{"Team <team@example.org>", true},
		{"alice+lists@example.org", true},
		{"alice.old@elsewhere.example", true},
		{"bobs@example.org", false},
		{"bob@example.org, nobody@example.org", false},
		{"someone@remote.example", false},
	}
	for i, c := range cases {
		sender := fmt.Sprintf("sender%d@remote.example", i)
		before := len(e.fwd.enqueued)
		msg := strings.Replace(sieveMsg, "To: alice@example.org", "To: "+c.to, 1)
		if res := e.deliver(t, sender, msg, "alice@example.org"); res[0] != nil {
			t.Fatal(res[0])
		}
		if got := len(e.fwd.enqueued) > before; got != c.reply {
			t.Errorf("To: %s: replied %v, want %v", c.to, got, c.reply)
		}
	}
}

// TestSieveBefore: an administrator's before script files spam into Junk,
// and then the user's script does not run (the implicit keep is gone).
func TestSieveBefore(t *testing.T) {
	e := newSieveEnv(t, `require ["fileinto", "mailbox"]; if header :is "x-spam" "yes" { fileinto :create "Junk"; }`)
	e.script(t, aliceHome, `require "fileinto"; fileinto "Nope-user-ran";`)
	e.deliver(t, "carol@remote.example", "X-Spam: yes\r\n"+sieveMsg, "alice@example.org")
	if n := len(folder(t, e.MailRoot, aliceHome, ".Junk")); n != 1 {
		t.Errorf("Junk has %d", n)
	}
	if strings.Contains(e.log.String(), "Nope-user-ran") {
		t.Error("the user's script ran after the before script filed the message")
	}
	// Bob has no script of his own: the before script runs for him too.
	e.deliver(t, "carol@remote.example", "X-Spam: yes\r\n"+sieveMsg, "bob@example.org")
	if n := len(folder(t, e.MailRoot, "example.org/bob", ".Junk")); n != 1 {
		t.Errorf("bob's Junk has %d", n)
	}
}

// TestSieveRejectOneReply: with one reply for everybody (SMTP,
// `mailroom deliver`) and nobody else to deliver to, the refusal is the
// reply itself (RFC 5429 §2.1), and no bounce is made.
func TestSieveRejectOneReply(t *testing.T) {
	e := newSieveEnv(t)
	e.script(t, aliceHome, `require "ereject"; ereject "Not here.";`)
	ctx := context.Background()
	txn, _ := e.MDA.Begin(ctx, "carol@remote.example", mda.Info{Proto: "ESMTP"})
	txn.AddRcpt(ctx, "alice@example.org")
	err := txn.DeliverAll(ctx, strings.NewReader(sieveMsg))
	var pe *mda.PermanentError
	if !errors.As(err, &pe) || pe.Status != "5.7.1" || pe.Text != "Not here." {
		t.Fatalf("DeliverAll: %v, want the 5.7.1 refusal", err)
	}
	if len(e.fwd.bounces) != 0 || len(mailtest.Messages(t, e.MailRoot, aliceHome)) != 0 {
		t.Errorf("bounces %+v; or a copy was kept", e.fwd.bounces)
	}
}

// TestSieveKeepFlags: imap4flags' flags go with the implicit keep into
// INBOX, as IMAP sees them (system flags in the file name).
func TestSieveKeepFlags(t *testing.T) {
	e := newSieveEnv(t)
	e.script(t, aliceHome, `require "imap4flags"; addflag "\\Flagged"; if hasflag "\\flagged" { addflag "\\Seen"; }`)
	if res := e.deliver(t, "carol@remote.example", sieveMsg, "alice@example.org"); res[0] != nil {
		t.Fatal(res[0])
	}
	files := folder(t, e.MailRoot, aliceHome, "")
	if len(files) != 1 {
		t.Fatalf("INBOX holds %v", files)
	}
	for name := range files {
		if !strings.HasPrefix(name, "cur/") || !strings.HasSuffix(name, ":2,FS") {
			t.Errorf("file %s, want cur/...:2,FS", name)
		}
	}
}

type fakeSigner struct{ seen string }

func (s *fakeSigner) Sign(r io.Reader) (string, error) {
	b, _ := io.ReadAll(r)
	s.seen = string(b)
	return "DKIM-Signature: v=1; d=example.org\r\n", nil
}

// TestSieveRedirectSRSAndSignedVacation: a redirect's sender is
// rewritten with SRS like a forward's; a vacation reply is signed when a
// signer is configured, over the reply as queued.
func TestSieveRedirectSRSAndSignedVacation(t *testing.T) {
	rw, err := srs.New(srs.Options{Secret: "test secret", Domain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	sg := &fakeSigner{}
	e := newSieveEnvWith(t, func(o *mda.Options) { o.SRS = rw; o.Sieve.Signer = sg })
	e.script(t, aliceHome, `require ["vacation", "copy"]; redirect :copy "a@elsewhere.example"; vacation "Away.";`)
	if res := e.deliver(t, "carol@remote.example", sieveMsg, "alice@example.org"); res[0] != nil {
		t.Fatal(res[0])
	}
	if len(e.fwd.enqueued) != 2 {
		t.Fatalf("enqueued %+v, want the redirect and the reply", e.fwd.enqueued)
	}
	if from := e.fwd.enqueued[0].from; !strings.HasPrefix(from, "SRS0=") {
		t.Errorf("redirect sender %q, want SRS0", from)
	}
	reply := e.fwd.enqueued[1].body
	if !strings.HasPrefix(reply, "DKIM-Signature: v=1; d=example.org\r\n") || reply[len("DKIM-Signature: v=1; d=example.org\r\n"):] != sg.seen {
		t.Errorf("reply not signed over what was queued:\n%s", reply)
	}
}

// TestSieveSeesTraceFields: the script reads the header as stored, with
// the trace fields delivery puts before it (built once per recipient),
// and every copy it makes carries the same ones.
func TestSieveSeesTraceFields(t *testing.T) {
	e := newSieveEnv(t)
	e.script(t, aliceHome, `require ["fileinto", "mailbox"];
if allof (header :is "delivered-to" "alice@example.org", header :is "x-original-to" "alice@example.org",
	header :contains "received" "mx.test") { fileinto :create "Traced"; keep; }`)
	if res := e.deliver(t, "carol@remote.example", sieveMsg, "alice@example.org"); res[0] != nil {
		t.Fatal(res[0])
	}
	inbox := mailtest.Messages(t, e.MailRoot, aliceHome)
	filed := folder(t, e.MailRoot, aliceHome, ".Traced")
	if len(inbox) != 1 || len(filed) != 1 {
		t.Fatalf("INBOX has %d messages, Traced %d; want one each (the script did not see the trace fields?)", len(inbox), len(filed))
	}
	for _, body := range filed {
		if body != inbox[0] {
			t.Errorf("the copies differ:\nINBOX:\n%s\nTraced:\n%s", inbox[0], body)
		}
		if !strings.HasPrefix(body, "Return-Path: <carol@remote.example>\nX-Original-To: alice@example.org\nDelivered-To: alice@example.org\nReceived: ") {
			t.Errorf("the copy lacks the trace fields:\n%s", body)
		}
	}
}
