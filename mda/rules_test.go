package mda_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/mailenv"
	"mailroom/internal/srs"
	"mailroom/mailbox/mbox"
	"mailroom/mda"
	"mailroom/mda/alias"
)

// fakeForwarder records what mda hands the queue.
type fakeForwarder struct {
	mu       sync.Mutex
	enqueued []forwarded
	bounces  [][]mda.Failure
	err      error
}

type forwarded struct {
	from string
	to   []string
	body string
}

func (f *fakeForwarder) Enqueue(ctx context.Context, from string, to []string, r io.Reader) (string, error) {
	b, _ := io.ReadAll(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	f.enqueued = append(f.enqueued, forwarded{from, to, string(b)})
	return "Q1", nil
}

func (f *fakeForwarder) Bounce(ctx context.Context, from string, failures []mda.Failure, r io.Reader) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.bounces = append(f.bounces, failures)
	return nil
}

// rulesEnv is a delivery stack with an aliases file and a forwarder.
type rulesEnv struct {
	*mailenv.Env
	fwd     *fakeForwarder
	aliases string // path of the aliases file
	out     string // a directory commands and file targets may write to
}

func newRulesEnv(t testing.TB, aliasesText string, adjust func(*mda.Options)) *rulesEnv {
	t.Helper()
	out := t.TempDir()
	path := filepath.Join(t.TempDir(), "aliases")
	aliasesText = strings.ReplaceAll(aliasesText, "$OUT", out)
	if err := os.WriteFile(path, []byte(aliasesText), 0o644); err != nil {
		t.Fatal(err)
	}
	table, err := alias.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	fwd := &fakeForwarder{}
	env := mailenv.NewEnv(t, mailenv.EnvOptions{
		Users: []string{"alice@example.org", "bob@example.org", "carol@example.org"},
		Adjust: func(o *mda.Options) {
			o.Aliases = table
			o.Forwarder = fwd
			o.CommandTimeout = 5 * time.Second
			if adjust != nil {
				adjust(o)
			}
		},
	})
	return &rulesEnv{Env: env, fwd: fwd, aliases: path, out: out}
}

func (e *rulesEnv) forward(t *testing.T, user, text string) {
	t.Helper()
	text = strings.ReplaceAll(text, "$OUT", e.out)
	dir := filepath.Join(e.MailRoot, "example.org", user)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".forward"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// deliver runs one LMTP-style transaction and returns the per-recipient
// results (or fails the test on a message-wide error).
func (e *rulesEnv) deliver(t *testing.T, from, msg string, rcpts ...string) []error {
	t.Helper()
	ctx := context.Background()
	txn, err := e.MDA.Begin(ctx, from, mda.Info{Proto: "LMTP"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rcpts {
		if err := txn.AddRcpt(ctx, r); err != nil {
			t.Fatalf("AddRcpt(%s): %v", r, err)
		}
	}
	res, err := txn.Deliver(ctx, strings.NewReader(msg))
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	return res
}

const plainMsg = "From: sender@remote.example\nSubject: rules\n\nhello\nFrom the start of a line\n"

func TestAliasToThreeMailboxesOnce(t *testing.T) {
	e := newRulesEnv(t, "team: alice, bob, carol@example.org, alice\nall: team, alice\n", nil)
	res := e.deliver(t, "sender@remote.example", plainMsg, "all@example.org", "alice@example.org")
	if res[0] != nil || res[1] != nil {
		t.Fatalf("results %v", res)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		msgs := mailtest.Messages(t, e.MailRoot, "example.org/"+u)
		if len(msgs) != 1 {
			t.Fatalf("%s has %d messages, want 1 (one copy per mailbox)", u, len(msgs))
		}
		if !strings.Contains(msgs[0], "X-Original-To: all@example.org\n") {
			t.Errorf("%s: X-Original-To is not the address as received:\n%s", u, msgs[0])
		}
		if !strings.Contains(msgs[0], "Delivered-To: "+u+"@example.org\n") {
			t.Errorf("%s: Delivered-To is not the mailbox's address:\n%s", u, msgs[0])
		}
	}
}

func TestRemoteTargetGoesToTheQueueWithTheOriginalSender(t *testing.T) {
	e := newRulesEnv(t, "sales: alice, partner@remote.example\n", nil)
	res := e.deliver(t, "sender@remote.example", plainMsg, "sales@example.org")
	if res[0] != nil {
		t.Fatal(res[0])
	}
	if len(e.fwd.enqueued) != 1 {
		t.Fatalf("enqueued %+v", e.fwd.enqueued)
	}
	f := e.fwd.enqueued[0]
	if f.from != "sender@remote.example" || len(f.to) != 1 || f.to[0] != "partner@remote.example" {
		t.Errorf("forwarded from %q to %v", f.from, f.to)
	}
	if !strings.HasPrefix(f.body, "Delivered-To: sales@example.org\nReceived: ") || !strings.Contains(f.body, "\nhello\n") {
		t.Errorf("forwarded copy:\n%s", f.body)
	}
	if len(mailtest.Messages(t, e.MailRoot, "example.org/alice")) != 1 {
		t.Error("alice did not get her copy")
	}
}

func TestSRS(t *testing.T) {
	rw, err := srs.New(srs.Options{Secret: "test secret", Domain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	e := newRulesEnv(t, "sales: partner@remote.example\n", func(o *mda.Options) { o.SRS = rw })
	if res := e.deliver(t, "sender@origin.example", plainMsg, "sales@example.org"); res[0] != nil {
		t.Fatal(res[0])
	}
	from := e.fwd.enqueued[0].from
	if !strings.HasPrefix(from, "SRS0=") || !strings.HasSuffix(from, "@example.org") {
		t.Fatalf("forwarded with sender %q, want an SRS0 address at example.org", from)
	}
	// The bounce comes back to the SRS address and goes to the sender.
	if res := e.deliver(t, "", "Subject: bounce\n\nundeliverable\n", from); res[0] != nil {
		t.Fatal(res[0])
	}
	back := e.fwd.enqueued[1]
	if back.from != "" || len(back.to) != 1 || back.to[0] != "sender@origin.example" {
		t.Errorf("bounce forwarded from %q to %v, want <> to sender@origin.example", back.from, back.to)
	}
	// A forged one is refused at RCPT time.
	txn, _ := e.MDA.Begin(context.Background(), "", mda.Info{})
	forged := "SRS0=AAAA=" + from[strings.Index(from, "=")+6:]
	if err := txn.AddRcpt(context.Background(), forged); !errors.Is(err, mda.ErrNoSuchUser) {
		t.Errorf("forged SRS address %s: %v, want ErrNoSuchUser", forged, err)
	}
}

func TestPipeAndFileTargets(t *testing.T) {
	e := newRulesEnv(t, `
pipe: "|env > $OUT/env; cat > $OUT/stdin"
file: $OUT/archive.mbox
temp: "|exit 75"
perm: "|(echo 'no such list'; echo ZZZ | tr Z Y) >&2; exit 1"
mixed: alice, "|exit 1"
`, nil)
	res := e.deliver(t, "sender@remote.example", plainMsg, "pipe+ext@example.org", "file@example.org", "temp@example.org", "perm@example.org", "mixed@example.org")
	if res[0] != nil || res[1] != nil {
		t.Fatalf("pipe %v, file %v", res[0], res[1])
	}
	var tmp interface{ Temporary() bool }
	if !errors.As(res[2], &tmp) || !tmp.Temporary() {
		t.Errorf("exit 75: %v, want a temporary error", res[2])
	}
	var pe *mda.PermanentError
	if !errors.As(res[3], &pe) || pe.Status != "5.3.0" || !strings.Contains(pe.Text, "no such list") || strings.Contains(pe.Text, "YYY") {
		t.Errorf("exit 1: %#v, want 5.3.0 with the first line of stderr", res[3])
	}
	if res[4] != nil {
		t.Errorf("mixed: %v, want success (alice got it; the pipe is bounced)", res[4])
	}
	if len(e.fwd.bounces) != 1 || len(e.fwd.bounces[0]) != 1 || e.fwd.bounces[0][0].Rcpt != "mixed@example.org" {
		t.Errorf("bounces %+v, want one for mixed's pipe", e.fwd.bounces)
	}

	env, _ := os.ReadFile(filepath.Join(e.out, "env"))
	for _, want := range []string{"SENDER=sender@remote.example", "RECIPIENT=pipe+ext@example.org", "LOCAL=pipe+ext",
		"DOMAIN=example.org", "EXTENSION=ext", "USER=pipe", "HOME="} {
		if !strings.Contains(string(env), want+"\n") && !strings.Contains(string(env), want) {
			t.Errorf("command environment lacks %s:\n%s", want, env)
		}
	}
	stdin, _ := os.ReadFile(filepath.Join(e.out, "stdin"))
	if !strings.HasPrefix(string(stdin), "Return-Path: <sender@remote.example>\n") || !strings.Contains(string(stdin), "Delivered-To: pipe+ext@example.org\n") || !strings.HasSuffix(string(stdin), plainMsg) {
		t.Errorf("command stdin:\n%s", stdin)
	}

	f, err := os.Open(filepath.Join(e.out, "archive.mbox"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	msgs, err := mbox.Split(f)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("mbox: %d messages, %v", len(msgs), err)
	}
}

func TestForwardFile(t *testing.T) {
	e := newRulesEnv(t, "", nil)
	e.forward(t, "alice", "# keep a copy and forward\n\\alice, friend@remote.example\n|/bin/true\n")
	e.forward(t, "bob", "# nothing but comments\n\n")
	res := e.deliver(t, "sender@remote.example", plainMsg, "alice@example.org", "bob@example.org")
	if res[0] != nil || res[1] != nil {
		t.Fatalf("results %v", res)
	}
	if n := len(mailtest.Messages(t, e.MailRoot, "example.org/alice")); n != 1 {
		t.Errorf("alice kept %d copies, want 1", n)
	}
	if n := len(mailtest.Messages(t, e.MailRoot, "example.org/bob")); n != 1 {
		t.Errorf("bob (comment-only .forward) got %d, want 1", n)
	}
	if len(e.fwd.enqueued) != 1 || e.fwd.enqueued[0].to[0] != "friend@remote.example" {
		t.Errorf("forwarded %+v", e.fwd.enqueued)
	}
	// The pipe is refused (allow_commands is off): bounced, alone.
	if len(e.fwd.bounces) != 1 || !errors.Is(e.fwd.bounces[0][0].Err, alias.ErrNotAllowed) {
		t.Errorf("bounces %+v, want the refused pipe", e.fwd.bounces)
	}
}

func TestForwardFileIgnoredWhenPlanted(t *testing.T) {
	e := newRulesEnv(t, "", nil)
	dir := filepath.Join(e.MailRoot, "example.org", "alice")
	os.MkdirAll(dir, 0o700)
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, ".forward")); err != nil {
		t.Fatal(err)
	}
	e.forward(t, "bob", "carol\n")
	os.Chmod(filepath.Join(e.MailRoot, "example.org", "bob", ".forward"), 0o666)
	res := e.deliver(t, "sender@remote.example", plainMsg, "alice@example.org", "bob@example.org")
	if res[0] != nil || res[1] != nil {
		t.Fatalf("results %v", res)
	}
	if len(mailtest.Messages(t, e.MailRoot, "example.org/alice")) != 1 || len(mailtest.Messages(t, e.MailRoot, "example.org/bob")) != 1 {
		t.Error("a symlinked or world-writable .forward was honoured")
	}
	if len(mailtest.Messages(t, e.MailRoot, "example.org/carol")) != 0 {
		t.Error("carol got bob's mail through a world-writable .forward")
	}
}

func TestLoops(t *testing.T) {
	e := newRulesEnv(t, "list: alice, bob\n", nil)
	// A message that was already delivered to list@ comes back.
	res := e.deliver(t, "sender@remote.example", "Delivered-To: list@example.org\n"+plainMsg, "list@example.org", "carol@example.org")
	if !errors.Is(res[0], mda.ErrLoop) || res[1] != nil {
		t.Fatalf("results %v, want a loop for list and delivery for carol", res)
	}
	if len(mailtest.Messages(t, e.MailRoot, "example.org/alice")) != 0 {
		t.Error("a looping message was delivered")
	}
	// A plain mailbox is not a loop: a resent message may carry its own address.
	res = e.deliver(t, "sender@remote.example", "Delivered-To: carol@example.org\n"+plainMsg, "carol@example.org")
	if res[0] != nil {
		t.Errorf("plain delivery with Delivered-To of itself: %v", res[0])
	}

	// Two .forward files pointing at each other: refused at RCPT time.
	e.forward(t, "alice", "bob\n")
	e.forward(t, "bob", "alice@example.org\n")
	txn, _ := e.MDA.Begin(context.Background(), "x@remote.example", mda.Info{})
	if err := txn.AddRcpt(context.Background(), "alice@example.org"); !errors.Is(err, mda.ErrLoop) {
		t.Errorf("alice <-> bob: %v, want ErrLoop", err)
	}

	// Too many hops.
	txn, _ = e.MDA.Begin(context.Background(), "x@remote.example", mda.Info{})
	txn.AddRcpt(context.Background(), "carol@example.org")
	_, err := txn.Deliver(context.Background(), strings.NewReader(strings.Repeat("Received: x\n", 101)+plainMsg))
	if !errors.Is(err, mda.ErrLoop) {
		t.Errorf("101 Received: %v, want ErrLoop", err)
	}
}

func TestAliasesReloadWhenTheFileChanges(t *testing.T) {
	e := newRulesEnv(t, "sales: alice\n", nil)
	if _, err := e.MDA.Resolve(context.Background(), "sales@example.org"); err != nil {
		t.Fatal(err)
	}
	// A broken file keeps the old table.
	if err := os.WriteFile(e.aliases, []byte("sales alice\nnew: bob\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r, err := e.MDA.Resolve(context.Background(), "sales@example.org"); err != nil || r.Homes()[0] != "example.org/alice" {
		t.Fatalf("after a broken edit: %v %v", r.Homes(), err)
	}
	// A good edit is picked up without a signal.
	if err := os.WriteFile(e.aliases, []byte("sales: bob\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r, err := e.MDA.Resolve(context.Background(), "sales@example.org"); err != nil || r.Homes()[0] != "example.org/bob" {
		t.Fatalf("after a good edit: %v %v", r.Homes(), err)
	}
}

func TestForwardFileOfAnotherOwnerIgnored(t *testing.T) {
	if os.Geteuid() != 0 {
		if mailtest.InCI() {
			t.Fatal("changing a file's owner needs root, which CI has")
		}
		t.Skip("SKIP: changing a file's owner needs root")
	}
	e := newRulesEnv(t, "", nil)
	e.forward(t, "alice", "carol\n")
	if err := os.Chown(filepath.Join(e.MailRoot, "example.org", "alice", ".forward"), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if res := e.deliver(t, "sender@remote.example", plainMsg, "alice@example.org"); res[0] != nil {
		t.Fatal(res[0])
	}
	if len(mailtest.Messages(t, e.MailRoot, "example.org/alice")) != 1 || len(mailtest.Messages(t, e.MailRoot, "example.org/carol")) != 0 {
		t.Error("a .forward owned by another user was honoured")
	}
}

func TestCommandThatNeverExitsIsRetried(t *testing.T) {
	e := newRulesEnv(t, "slow: alice, \"|sleep 1000\"\n", func(o *mda.Options) { o.CommandTimeout = 200 * time.Millisecond })
	start := time.Now()
	res := e.deliver(t, "sender@remote.example", plainMsg, "slow@example.org")
	var tmp interface{ Temporary() bool }
	if !errors.As(res[0], &tmp) || !tmp.Temporary() {
		t.Fatalf("result %v, want a temporary failure so that the client retries", res[0])
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("delivery took %v with a 200ms command timeout", d)
	}
	// In all-or-nothing mode (SMTP) alice's staged copy is taken back too.
	txn, _ := e.MDA.Begin(context.Background(), "sender@remote.example", mda.Info{})
	txn.AddRcpt(context.Background(), "slow@example.org")
	if err := txn.DeliverAll(context.Background(), strings.NewReader(plainMsg)); err == nil {
		t.Fatal("DeliverAll succeeded with a command that timed out")
	}
	// Either way alice's copy is taken back: the retry brings it.
	if n := len(mailtest.Messages(t, e.MailRoot, "example.org/alice")); n != 0 {
		t.Errorf("alice has %d messages, want 0 until the retry", n)
	}
}

// hopForwarder is a queue that hands forwarded mail straight to another
// server's mda, as the remote MX would receive it, and records what that
// server answered.
type hopForwarder struct {
	next    func() *mda.Deliverer
	hops    *int
	results *[]error
}

func (h hopForwarder) Enqueue(ctx context.Context, from string, to []string, r io.Reader) (string, error) {
	*h.hops++
	if *h.hops > 10 {
		return "", errors.New("the loop was not stopped")
	}
	txn, err := h.next().Begin(ctx, from, mda.Info{Proto: "ESMTP"})
	if err != nil {
		return "", err
	}
	for _, rcpt := range to {
		if err := txn.AddRcpt(ctx, rcpt); err != nil {
			*h.results = append(*h.results, err)
			return "Q", nil
		}
	}
	*h.results = append(*h.results, txn.DeliverAll(ctx, r))
	return "Q", nil
}

func (h hopForwarder) Bounce(ctx context.Context, from string, failures []mda.Failure, r io.Reader) error {
	return nil
}

// TestTwoHopForwardingLoop: alice@example.org forwards to
// bob@remote.example, on another server, who forwards back. Each server
// alone sees no cycle; the Delivered-To: that the first server put on the
// forwarded copy stops the message when it comes back.
func TestTwoHopForwardingLoop(t *testing.T) {
	var a, b *mailenv.Env
	hops := 0
	var results []error
	a = mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"alice@example.org"}, Adjust: func(o *mda.Options) {
		o.Forwarder = hopForwarder{next: func() *mda.Deliverer { return b.MDA }, hops: &hops, results: &results}
	}})
	b = mailenv.NewEnv(t, mailenv.EnvOptions{Domains: []string{"remote.example"}, Users: []string{"bob@remote.example"}, Adjust: func(o *mda.Options) {
		o.Forwarder = hopForwarder{next: func() *mda.Deliverer { return a.MDA }, hops: &hops, results: &results}
	}})
	for _, f := range []struct{ root, home, text string }{
		{a.MailRoot, "example.org/alice", "bob@remote.example\n"},
		{b.MailRoot, "remote.example/bob", "alice@example.org\n"},
	} {
		dir := filepath.Join(f.root, f.home)
		os.MkdirAll(dir, 0o700)
		if err := os.WriteFile(filepath.Join(dir, ".forward"), []byte(f.text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	txn, _ := a.MDA.Begin(ctx, "sender@origin.example", mda.Info{Proto: "ESMTP"})
	if err := txn.AddRcpt(ctx, "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := txn.DeliverAll(ctx, strings.NewReader(plainMsg)); err != nil {
		t.Fatalf("first delivery: %v", err)
	}
	if hops != 2 {
		t.Errorf("%d hops, want 2 (to bob, back to alice)", hops)
	}
	// Innermost first: alice's server refused the returning copy.
	if len(results) != 2 || !errors.Is(results[0], mda.ErrLoop) || results[1] != nil {
		t.Fatalf("results %v, want [loop, accepted]", results)
	}
	if len(mailtest.Messages(t, a.MailRoot, "example.org/alice"))+len(mailtest.Messages(t, b.MailRoot, "remote.example/bob")) != 0 {
		t.Error("a looping message reached a mailbox")
	}
}
