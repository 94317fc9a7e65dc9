package imap

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"mailroom/mailbox"
)

// Unit tests for what imaptest's compliance suite found (issue 14), so
// that a failure names its cause without imaptest.

// \Recent (RFC 3501 §2.3.2): EXAMINE shows without claiming, the first
// SELECT claims, STATUS counts what nobody has claimed, a new message is
// the first poller's, SEARCH NEW/OLD/RECENT follow it, and a client that
// enabled IMAP4rev2 hears nothing of it.
func TestRecent(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	ts.deliver(t, "INBOX", msgN(1))
	ts.deliver(t, "INBOX", msgN(2))
	a := dialRaw(t, ts.addr)
	a.login()
	if u := a.ok("EXAMINE INBOX"); !slices.Contains(u, "* 2 RECENT") {
		t.Errorf("EXAMINE: %q", u)
	}
	a.ok("CLOSE")
	if u := a.ok("STATUS INBOX (RECENT)"); strings.Join(u, "") != `* STATUS INBOX (RECENT 2)` {
		t.Errorf("STATUS after EXAMINE: %q", u)
	}
	if u := a.ok("SELECT INBOX"); !slices.Contains(u, "* 2 RECENT") {
		t.Errorf("SELECT: %q", u)
	}
	if u := a.ok("FETCH 1 FLAGS"); strings.Join(u, "") != `* 1 FETCH (FLAGS (\Recent))` {
		t.Errorf("FETCH: %q", u)
	}
	b := dialRaw(t, ts.addr)
	b.login()
	if u := b.ok("STATUS INBOX (RECENT)"); strings.Join(u, "") != `* STATUS INBOX (RECENT 0)` {
		t.Errorf("STATUS while a has them: %q", u)
	}
	if u := b.ok("SELECT INBOX"); !slices.Contains(u, "* 0 RECENT") {
		t.Errorf("second SELECT: %q", u)
	}
	ts.deliver(t, "INBOX", msgN(3))
	if u := a.ok("NOOP"); strings.Join(u, "|") != "* 3 EXISTS|* 3 RECENT" {
		t.Errorf("a sees the new message as %q", u)
	}
	if u := b.ok("NOOP"); strings.Join(u, "|") != "* 3 EXISTS|* 0 RECENT" {
		t.Errorf("b sees the new message as %q", u)
	}
	for _, tc := range []struct {
		r         *raw
		cmd, want string
	}{
		{a, "SEARCH RECENT", "* SEARCH 1 2 3"},
		{a, `STORE 1 +FLAGS.SILENT (\Seen)`, ""},
		{a, "SEARCH NEW", "* SEARCH 2 3"},
		{a, "SEARCH OLD", "* SEARCH"},
		{b, "NOOP", `* 1 FETCH (UID 1 FLAGS (\Seen))`},
		{b, "SEARCH RECENT", "* SEARCH"},
		{b, "SEARCH OLD", "* SEARCH 1 2 3"},
	} {
		if u := tc.r.ok("%s", tc.cmd); strings.Join(u, "|") != tc.want {
			t.Errorf("%s: %q, want %q", tc.cmd, u, tc.want)
		}
	}
	c := dialRaw(t, ts.addr)
	c.login()
	c.ok("ENABLE IMAP4rev2")
	ts.deliver(t, "INBOX", msgN(4))
	if u := c.ok("SELECT INBOX"); slices.ContainsFunc(u, func(l string) bool { return strings.Contains(l, "RECENT") }) {
		t.Errorf("IMAP4rev2 SELECT: %q", u)
	}
	if u := c.ok("FETCH 4 FLAGS"); strings.Join(u, "") != `* 4 FETCH (FLAGS ())` {
		t.Errorf("IMAP4rev2 FETCH: %q", u)
	}
}

// ENVELOPE keeps groups and source routes (RFC 9051 §7.5.2), and the
// header's own strings.
func TestEnvelopeGroupsAndRoutes(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	ts.deliver(t, "INBOX", "Date: Thu, 15 Feb 2007 01:02:03 +0200\r\nFrom: user@domain (Real Name)\r\n"+
		"To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\nCc: group:;, group2: (foo) ;\r\n"+
		"Bcc: <@route:user@domain>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nMessage-ID: <m@x>\r\n\r\nbody\r\n")
	r := dialRaw(t, ts.addr)
	r.login()
	r.ok("EXAMINE INBOX")
	want := `* 1 FETCH (ENVELOPE ("Thu, 15 Feb 2007 01:02:03 +0200" "=?utf-8?q?caf=C3=A9?=" ` +
		`(("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) ` +
		`((NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")(NIL NIL "g2" "d2.org")(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL "g3" "d3.org")(NIL NIL NIL NIL)) ` +
		`((NIL NIL "group" NIL)(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL NIL NIL)) ` +
		`((NIL "@route" "user" "domain")) NIL "<m@x>"))`
	if u := r.ok("FETCH 1 ENVELOPE"); strings.Join(u, "") != want {
		t.Errorf("ENVELOPE:\n got %q\nwant %q", u, want)
	}
}

// APPEND with a literal8 of binary content (RFC 3516 §4.4): the part is
// stored in base64, BODY[1] has no NUL, BINARY[1] gives the octets back.
// A partial BINARY fetch names its origin (RFC 3516 §4.2).
func TestAppendBinary(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	r := dialRaw(t, ts.addr)
	r.login()
	part := "\x00-\xe4\n\r\n\n"
	msg := "From: a@x\r\nMime-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + part
	r.ok("APPEND INBOX ~{%d+}\r\n%s", len(msg), msg)
	r.ok("EXAMINE INBOX")
	u := r.ok("FETCH 1 (BODY.PEEK[1])")
	if body := strings.Join(u, "\n"); strings.Contains(body, "\x00") || !strings.Contains(body, base64.StdEncoding.EncodeToString([]byte(part))) {
		t.Errorf("BODY[1]: %q", u)
	}
	r.send("B1 FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])")
	if l, want := r.line(), fmt.Sprintf("* 1 FETCH (BINARY[1] ~{%d}", len(part)); l != want {
		t.Fatalf("BINARY: %q, want %q", l, want)
	}
	if got, _ := r.r.Peek(len(part)); string(got) != part {
		t.Errorf("BINARY[1] octets %q", got)
	}
	r.r.Discard(len(part))
	if l, want := r.line(), fmt.Sprintf(" BINARY.SIZE[1] %d)", len(part)); l != want {
		t.Errorf("BINARY.SIZE: %q, want %q", l, want)
	}
	r.until("B1")
	if u := r.ok("FETCH 1 (BINARY.PEEK[1]<1.2>)"); len(u) == 0 || !strings.HasPrefix(u[0], "* 1 FETCH (BINARY[1]<1> ~{2}") {
		t.Errorf("partial BINARY: %q", u)
	}
}

func TestUnbinary(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"A: b\r\n\r\ntext\r\n", "A: b\r\n\r\ntext\r\n"},
		{"Content-Transfer-Encoding: binary\r\n\r\n\x00x", "Content-Transfer-Encoding: base64\r\n\r\nAHg=\r\n"},
		{"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\nContent-Transfer-Encoding: BINARY\r\n\r\n\x00\r\n--b\r\n\r\nkept\r\n--b--\r\nepi\r\n",
			"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\nAA==\r\n--b\r\n\r\nkept\r\n--b--\r\nepi\r\n"},
		{"Content-Transfer-Encoding: 8bit\r\n\r\nnul\x00here", "Content-Transfer-Encoding: base64\r\n\r\nbnVsAGhlcmU=\r\n"},
	} {
		if got := string(unbinary([]byte(c.in))); got != c.want {
			t.Errorf("%q:\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

// SEARCH FROM matches addresses as parsed: a comment inside one does not
// hide it (imaptest search-addresses).
func TestSearchAddresses(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	ts.deliver(t, "INBOX", "From: <user-from (comment)@ (comment) domain.org>\r\n\r\nx\r\n")
	ts.deliver(t, "INBOX", "From: RealFrom <user-from@domain.org>\r\n\r\nx\r\n")
	ts.deliver(t, "INBOX", "From: other@domain.org\r\n\r\nx\r\n")
	r := dialRaw(t, ts.addr)
	r.login()
	r.ok("EXAMINE INBOX")
	for _, tc := range []struct{ key, want string }{
		{"FROM user-from@domain.org", "* SEARCH 1 2"},
		{"FROM realfrom", "* SEARCH 2"},
		{"FROM comment", "* SEARCH 1"}, // the raw field still counts
	} {
		if u := r.ok("SEARCH %s", tc.key); strings.Join(u, "") != tc.want {
			t.Errorf("SEARCH %s: %q, want %q", tc.key, u, tc.want)
		}
	}
}

// subsStore keeps subscriptions apart from folders, as maildir does, for
// LIST (SUBSCRIBED) and LSUB over names without folders.
type subsStore struct{ Store }

func (s subsStore) Open(ctx context.Context, home string) (Folders, error) {
	f, err := s.Store.Open(ctx, home)
	return &subsFolders{Folders: f, subs: map[string]bool{}}, err
}

type subsFolders struct {
	Folders
	mu   sync.Mutex
	subs map[string]bool
}

func (f *subsFolders) SetSubscribed(ctx context.Context, name string, on bool) error {
	f.mu.Lock()
	f.subs[name] = on
	f.mu.Unlock()
	if err := f.Folders.SetSubscribed(ctx, name, on); err != nil && !errors.Is(err, mailbox.ErrNoFolder) {
		return err
	}
	return nil
}

func (f *subsFolders) Subscriptions(ctx context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n, on := range f.subs {
		if on {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (f *subsFolders) List(ctx context.Context) ([]mailbox.Folder, error) {
	l, err := f.Folders.List(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range l {
		l[i].Subscribed = f.subs[l[i].Name]
	}
	return l, err
}

// LIST (SUBSCRIBED) shows a subscribed name whose folder is gone as
// \NonExistent (without \Noselect, RFC 5258 §3); RECURSIVEMATCH gives a
// parent CHILDINFO only for descendants the patterns do not match
// (RFC 5258 §3.5); LSUB "%" shows an unsubscribed level above subscribed
// ones as \Noselect (RFC 3501 §6.3.9).
func TestListSubscriptions(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	ts.srv.opts.Store = subsStore{ts.srv.opts.Store}
	r := dialRaw(t, ts.addr)
	r.login()
	for _, cmd := range []string{"CREATE m/t1", "CREATE m/t2/t1", "CREATE m/t6", "SUBSCRIBE m/t1", "SUBSCRIBE m/t2/t1", "SUBSCRIBE m/t6", "DELETE m/t6"} {
		r.ok("%s", cmd)
	}
	for _, tc := range []struct{ cmd, want string }{
		{`LIST (SUBSCRIBED) "" m/*`, `* LIST (\HasNoChildren \Subscribed) "/" "m/t1"|* LIST (\HasNoChildren \Subscribed) "/" "m/t2/t1"|* LIST (\NonExistent \HasNoChildren \Subscribed) "/" "m/t6"`},
		{`LIST (SUBSCRIBED RECURSIVEMATCH) "" (m/t2)`, `* LIST (\HasChildren) "/" "m/t2" (CHILDINFO ("SUBSCRIBED"))`},
		{`LIST (SUBSCRIBED RECURSIVEMATCH) "" (m/t2 m/t2/t1)`, `* LIST (\HasNoChildren \Subscribed) "/" "m/t2/t1"`},
		{`LSUB "" m/%`, `* LSUB (\HasNoChildren \Subscribed) "/" "m/t1"|* LSUB (\Noselect) "/" "m/t2"|* LSUB (\NonExistent \Noselect \HasNoChildren \Subscribed) "/" "m/t6"`},
	} {
		if u := r.ok("%s", tc.cmd); strings.Join(u, "|") != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.cmd, strings.Join(u, "|"), tc.want)
		}
	}
}
