package mda_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/mailenv"
	"mailroom/mailbox"
	"mailroom/mda"
)

func TestResolve(t *testing.T) {
	env := mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"alice@example.org", "bob+x@example.org"}})
	cases := []struct {
		addr string
		home string
		err  error
	}{
		{"alice@example.org", "example.org/alice", nil},
		{"ALICE@Example.Org", "example.org/alice", nil},
		{"alice+lists@example.org", "example.org/alice", nil},
		{"alice+a+b@example.org", "example.org/alice", nil},
		{"bob+x@example.org", "example.org/bob+x", nil}, // exact match wins over stripping
		{"carol@example.org", "", mda.ErrNoSuchUser},
		{"carol+alice@example.org", "", mda.ErrNoSuchUser},
		{"alice@elsewhere.net", "", mda.ErrNotLocal},
		{"../alice@example.org", "", mda.ErrBadAddress},
		{"al/ice@example.org", "", mda.ErrBadAddress},
		{"alice", "", mda.ErrBadAddress},
	}
	for _, c := range cases {
		t.Run(c.addr, func(t *testing.T) {
			r, err := env.MDA.Resolve(context.Background(), c.addr)
			if !errors.Is(err, c.err) {
				t.Fatalf("Resolve(%q) error = %v, want %v", c.addr, err, c.err)
			}
			if err == nil && (len(r.Homes()) != 1 || r.Homes()[0] != c.home) {
				t.Fatalf("Resolve(%q) homes = %q, want %q", c.addr, r.Homes(), c.home)
			}
		})
	}
}

// TestAddRcptHonoursContext: a recipient is looked up under the
// transaction's ctx, so a cancelled session gets an error (temporary: it
// maps to 4xx) instead of a lookup that goes on without it.
func TestAddRcptHonoursContext(t *testing.T) {
	env := mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"alice@example.org"}})
	txn, err := env.MDA.Begin(context.Background(), "sender@remote.example", mda.Info{Proto: "LMTP"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := txn.AddRcpt(ctx, "alice@example.org"); !errors.Is(err, context.Canceled) {
		t.Fatalf("AddRcpt with a cancelled ctx: %v, want context.Canceled", err)
	}
	if err := txn.AddRcpt(context.Background(), "alice@example.org"); err != nil {
		t.Fatalf("AddRcpt: %v", err)
	}
}

func TestDeliverHeadersAndBody(t *testing.T) {
	env := mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"alice@example.org"}})
	ctx := context.Background()
	txn, err := env.MDA.Begin(ctx, "sender@remote.example", mda.Info{Proto: "LMTP", Helo: "mx\r\nX-Evil: 1", RemoteAddr: "[127.0.0.1]"})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.AddRcpt(ctx, "Alice+Tag@example.org"); err != nil {
		t.Fatal(err)
	}
	body := "Subject: hi\r\nX-Bare-CR: a\rb\r\n\r\nline\r\n.dot\r\nlast line without newline"
	results, err := txn.Deliver(ctx, strings.NewReader(body))
	if err != nil || len(results) != 1 || results[0] != nil {
		t.Fatalf("Deliver = %v, %v", results, err)
	}
	msgs := mailtest.Messages(t, env.MailRoot, "example.org/alice")
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	head, rest, _ := strings.Cut(msgs[0], "Subject: hi\n")
	if want := "X-Bare-CR: a\rb\n\nline\n.dot\nlast line without newline"; rest != want {
		t.Errorf("body = %q, want %q (CRLF to LF, all else byte for byte)", rest, want)
	}
	lines := strings.Split(strings.TrimSuffix(head, "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("trace headers: %q", head)
	}
	if lines[0] != "Return-Path: <sender@remote.example>" {
		t.Errorf("line 1 %q", lines[0])
	}
	if lines[1] != "X-Original-To: Alice+Tag@example.org" {
		t.Errorf("line 2 %q", lines[1])
	}
	lines = lines[1:]
	if lines[1] != "Delivered-To: Alice+Tag@example.org" {
		t.Errorf("line 3 %q", lines[1])
	}
	if lines[2] != "Received: from mx??X-Evil: 1 ([127.0.0.1])" {
		t.Errorf("line 3 %q: client text must not break the header", lines[2])
	}
	if want := "\tby mx.test (mailroom) with LMTP id " + txn.ID(); lines[3] != want {
		t.Errorf("line 4 %q, want %q", lines[3], want)
	}
	if !strings.HasPrefix(lines[4], "\tfor <Alice+Tag@example.org>; ") {
		t.Errorf("line 5 %q", lines[4])
	}
	if _, err := time.Parse(time.RFC1123Z, strings.SplitN(lines[4], "; ", 2)[1]); err != nil {
		t.Errorf("Received date: %v", err)
	}
}

func TestNullSender(t *testing.T) {
	env := mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"alice@example.org"}})
	ctx := context.Background()
	txn, _ := env.MDA.Begin(ctx, "", mda.Info{})
	txn.AddRcpt(ctx, "alice@example.org")
	if err := txn.DeliverAll(ctx, strings.NewReader("x\n")); err != nil {
		t.Fatal(err)
	}
	m := mailtest.Messages(t, env.MailRoot, "example.org/alice")[0]
	if !strings.HasPrefix(m, "Return-Path: <>\n") || !strings.Contains(m, "Received: by mx.test (mailroom) with local id") {
		t.Fatalf("headers: %q", m)
	}
	if _, err := env.MDA.Begin(ctx, "bad sender", mda.Info{}); !errors.Is(err, mda.ErrBadSender) {
		t.Fatalf("bad sender: %v", err)
	}
}

func TestDuplicateRecipientsOneCopy(t *testing.T) {
	env := mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"alice@example.org", "bob@example.org"}})
	ctx := context.Background()
	txn, _ := env.MDA.Begin(ctx, "s@x.example", mda.Info{})
	for _, r := range []string{"alice@example.org", "bob@example.org", "ALICE@example.org", "alice+x@example.org"} {
		if err := txn.AddRcpt(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	results, err := txn.Deliver(ctx, strings.NewReader("x\n"))
	if err != nil || len(results) != 4 {
		t.Fatalf("Deliver = %v, %v", results, err)
	}
	for i, r := range results {
		if r != nil {
			t.Errorf("result %d: %v", i, r)
		}
	}
	if n := len(mailtest.Messages(t, env.MailRoot, "example.org/alice")); n != 1 {
		t.Errorf("alice got %d copies", n)
	}
	if n := len(mailtest.Messages(t, env.MailRoot, "example.org/bob")); n != 1 {
		t.Errorf("bob got %d copies", n)
	}
}

func TestTooBig(t *testing.T) {
	env := mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"alice@example.org"}, MaxMessageBytes: 1000})
	ctx := context.Background()
	txn, _ := env.MDA.Begin(ctx, "", mda.Info{})
	txn.AddRcpt(ctx, "alice@example.org")
	if _, err := txn.Deliver(ctx, strings.NewReader(strings.Repeat("x", 1001))); !errors.Is(err, mda.ErrTooBig) {
		t.Fatalf("Deliver = %v", err)
	}
	if n := len(mailtest.Messages(t, env.MailRoot, "example.org/alice")); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
	// A copy the queue delivers was accepted already: headers added since
	// must not make it bounce.
	txn, _ = env.MDA.Begin(ctx, "", mda.Info{Internal: true})
	txn.AddRcpt(ctx, "alice@example.org")
	if err := txn.DeliverAll(ctx, strings.NewReader(strings.Repeat("x", 1001))); err != nil {
		t.Fatalf("internal delivery: %v", err)
	}
}

func TestNoRecipients(t *testing.T) {
	env := mailenv.NewEnv(t, mailenv.EnvOptions{})
	txn, _ := env.MDA.Begin(context.Background(), "", mda.Info{})
	if _, err := txn.Deliver(context.Background(), strings.NewReader("x")); !errors.Is(err, mda.ErrNoRcpt) {
		t.Fatalf("Deliver = %v", err)
	}
}

// TestLargeMessageSpoolsToDisk delivers a message bigger than the memory
// spool to two recipients and checks both copies byte for byte.
func TestLargeMessageSpoolsToDisk(t *testing.T) {
	env := mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"alice@example.org", "bob@example.org"}})
	ctx := context.Background()
	var body bytes.Buffer
	for i := 0; body.Len() < 3<<20; i++ {
		body.WriteString("line of a big message, number ")
		body.WriteString(strings.Repeat("z", i%50))
		body.WriteString("\r\n")
	}
	want := strings.ReplaceAll(body.String(), "\r\n", "\n")
	txn, _ := env.MDA.Begin(ctx, "", mda.Info{})
	txn.AddRcpt(ctx, "alice@example.org")
	txn.AddRcpt(ctx, "bob@example.org")
	// A reader that returns small, odd-sized pieces splits CRLF pairs.
	if err := txn.DeliverAll(ctx, &oddReader{r: &body}); err != nil {
		t.Fatal(err)
	}
	for _, home := range []string{"example.org/alice", "example.org/bob"} {
		m := mailtest.Messages(t, env.MailRoot, home)
		if len(m) != 1 || !strings.HasSuffix(m[0], "\n\n"+want) && !strings.HasSuffix(m[0], want) {
			t.Fatalf("%s: wrong content (%d messages)", home, len(m))
		}
	}
}

type oddReader struct {
	r io.Reader
	n int
}

func (o *oddReader) Read(p []byte) (int, error) {
	o.n++
	return o.r.Read(p[:min(len(p), 1+o.n%7919)])
}

// failingStore wraps a Store and fails the Stage or Commit of one home.
type failingStore struct {
	mda.Store
	home, at string
	calls    atomic.Int32
}

func (f *failingStore) Stage(ctx context.Context, home string, r io.Reader) (mailbox.Staged, error) {
	f.calls.Add(1)
	if home == f.home && f.at == "stage" {
		return nil, errors.New("disk on fire")
	}
	s, err := f.Store.Stage(ctx, home, r)
	if err != nil || home != f.home {
		return s, err
	}
	return failingCommit{s}, nil
}

type failingCommit struct{ mailbox.Staged }

func (failingCommit) Commit(context.Context) error { return errors.New("rename failed") }

// TestDeliverAllIsAllOrNothing: when one mailbox fails, at stage or at
// commit, nobody keeps the message, so the sender's retry cannot
// duplicate it. Deliver, in contrast, keeps the successful ones.
func TestDeliverAllIsAllOrNothing(t *testing.T) {
	for _, at := range []string{"stage", "commit"} {
		t.Run(at, func(t *testing.T) {
			env := mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"alice@example.org", "bob@example.org", "carol@example.org"}})
			fs := &failingStore{Store: env.Store, home: "example.org/bob", at: at}
			d := newDeliverer(t, env, fs)
			ctx := context.Background()

			txn, _ := d.Begin(ctx, "", mda.Info{})
			for _, r := range []string{"alice@example.org", "bob@example.org", "carol@example.org"} {
				txn.AddRcpt(ctx, r)
			}
			if err := txn.DeliverAll(ctx, strings.NewReader("x\n")); err == nil {
				t.Fatal("DeliverAll succeeded")
			}
			for _, u := range []string{"alice", "bob", "carol"} {
				home := "example.org/" + u
				if n := len(mailtest.Messages(t, env.MailRoot, home)) + mailtest.TmpFiles(t, env.MailRoot, home); n != 0 {
					t.Errorf("%s kept %d files", u, n)
				}
			}

			txn, _ = d.Begin(ctx, "", mda.Info{})
			for _, r := range []string{"alice@example.org", "bob@example.org", "carol@example.org"} {
				txn.AddRcpt(ctx, r)
			}
			results, err := txn.Deliver(ctx, strings.NewReader("x\n"))
			if err != nil || results[0] != nil || results[1] == nil || results[2] != nil {
				t.Fatalf("Deliver = %v, %v; want only bob to fail", results, err)
			}
			if n := len(mailtest.Messages(t, env.MailRoot, "example.org/alice")); n != 1 {
				t.Errorf("alice has %d messages", n)
			}
			if n := len(mailtest.Messages(t, env.MailRoot, "example.org/bob")) + mailtest.TmpFiles(t, env.MailRoot, "example.org/bob"); n != 0 {
				t.Errorf("bob has %d files", n)
			}
		})
	}
}

func newDeliverer(t *testing.T, env *mailenv.Env, store mda.Store) *mda.Deliverer {
	d, err := mda.New(mda.Options{Hostname: "mx.test", Domains: []string{"example.org"}, Delimiter: "+",
		Accounts: env.Accounts, Store: store, SpoolDir: env.Dir})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestUnusualSenders: legal senders that are not safe as file names are
// still accepted (they never become one).
func TestUnusualSenders(t *testing.T) {
	env := mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"alice@example.org"}})
	ctx := context.Background()
	for _, from := range []string{"bounce@mail_host.example.com", `"john doe"@example.com`, "u@[192.0.2.1]", strings.Repeat("v", 70) + "@example.org"} {
		txn, err := env.MDA.Begin(ctx, from, mda.Info{})
		if err != nil {
			t.Fatalf("Begin(%q): %v", from, err)
		}
		txn.AddRcpt(ctx, "alice@example.org")
		if err := txn.DeliverAll(ctx, strings.NewReader("x\n")); err != nil {
			t.Fatal(err)
		}
	}
	if m := mailtest.Messages(t, env.MailRoot, "example.org/alice"); len(m) != 4 || !strings.HasPrefix(m[1], `Return-Path: <"john doe"@example.com>`) {
		t.Fatalf("messages: %q", m)
	}
}

// TestQuarantine: a quarantined transaction's mailbox copies go to each
// account's Junk folder, none to INBOX.
func TestQuarantine(t *testing.T) {
	env := mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"alice@example.org", "bob@example.org"}})
	ctx := context.Background()
	txn, err := env.MDA.Begin(ctx, "sender@remote.example", mda.Info{Proto: "ESMTP"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"alice@example.org", "bob@example.org"} {
		if err := txn.AddRcpt(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	txn.Quarantine("test")
	if err := txn.DeliverAll(ctx, strings.NewReader("Subject: spam\r\n\r\nbuy\r\n")); err != nil {
		t.Fatal(err)
	}
	for _, home := range []string{"example.org/alice", "example.org/bob"} {
		if n := len(mailtest.Messages(t, env.MailRoot, home)); n != 0 {
			t.Errorf("%s: %d messages in INBOX, want 0", home, n)
		}
		if m := mailtest.FolderMessages(t, env.MailRoot, home, ".Junk"); len(m) != 1 || !strings.Contains(m[0], "Subject: spam") {
			t.Errorf("%s: Junk holds %q, want the message", home, m)
		}
	}
}
