package imap_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	bolt "go.etcd.io/bbolt"

	"mailroom/account"
	"mailroom/imap"
	"mailroom/internal/mailtest"
	"mailroom/mailbox/maildir"
)

// The key scenarios again, against the real store: maildir.Index over a
// Maildir in a temporary directory and its bbolt index.

const home = "example.org/alice"

type maildirEnv struct {
	dir   string
	store *maildir.Store
	ix    *maildir.Index
	db    *bolt.DB
	srv   *imap.Server
	addr  string
	done  chan error
}

func startMaildir(t *testing.T, dir string) *maildirEnv {
	t.Helper()
	e := &maildirEnv{dir: dir, done: make(chan error, 1)}
	var err error
	if e.store, err = maildir.Open(maildir.Options{Root: filepath.Join(dir, "mail"), Hostname: "mx.test"}); err != nil {
		t.Fatal(err)
	}
	if e.db, err = bolt.Open(filepath.Join(dir, "mailroom.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if e.ix, err = maildir.NewIndex(e.db, e.store, maildir.IndexOptions{}); err != nil {
		t.Fatal(err)
	}
	e.srv = imap.New(imap.Options{
		Store: e.ix,
		Auth: imap.AuthenticatorFunc(func(ctx context.Context, user, pass string) (string, error) {
			if user == "alice" && pass == "secret" {
				return home, nil
			}
			return "", account.ErrAuthFailed
		}),
		// As cmd/mailroom: INBOX is read ahead while LOGIN checks.
		FindHome: func(ctx context.Context, user string) (string, bool) {
			return home, user == "alice"
		},
		AuthFailureDelay: -1,
		Panics:           mailtest.Panics,
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = l.Addr().String()
	go func() { e.done <- e.srv.Serve(l) }()
	t.Cleanup(e.stop)
	return e
}

func (e *maildirEnv) stop() {
	if e.srv == nil {
		return
	}
	e.srv.Close()
	<-e.done
	e.ix.Close()
	e.store.Close()
	e.db.Close()
	e.srv = nil
}

func (e *maildirEnv) deliver(t *testing.T, msg string) {
	t.Helper()
	st, err := e.store.Stage(context.Background(), home, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (e *maildirEnv) login(t *testing.T, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(e.addr, &imapclient.Options{UnilateralDataHandler: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

func msg(i int) string {
	return fmt.Sprintf("From: a@example.org\r\nTo: alice@example.org\r\nSubject: message %d\r\n\r\nbody %d\r\n", i, i)
}

func crlf(b []byte) []byte {
	var out bytes.Buffer
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out.WriteByte('\r')
		}
		out.WriteByte(c)
	}
	return out.Bytes()
}

func TestMaildirFoldersAndFetch(t *testing.T) {
	t.Parallel()
	e := startMaildir(t, t.TempDir())
	c := e.login(t, nil)
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range list {
		names = append(names, l.Mailbox)
		if l.Mailbox == "Sent" && !slices.Contains(l.Attrs, goimap.MailboxAttrSent) {
			t.Errorf("Sent without \\Sent: %v", l.Attrs)
		}
	}
	if strings.Join(names, " ") != "INBOX Archive Drafts Junk Sent Trash" {
		t.Errorf("new account's folders: %v", names)
	}

	files, _ := filepath.Glob("testdata/nasty/*.eml")
	var corpus [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		corpus = append(corpus, b)
		e.deliver(t, string(b))
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for i, b := range corpus {
		full := &goimap.FetchItemBodySection{Peek: true}
		msgs, err := c.Fetch(goimap.SeqSetNum(uint32(i+1)), &goimap.FetchOptions{
			UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true,
			BodyStructure: &goimap.FetchItemBodyStructure{Extended: true},
			BodySection: []*goimap.FetchItemBodySection{full,
				{Specifier: goimap.PartSpecifierHeader, Peek: true},
				{Specifier: goimap.PartSpecifierText, Peek: true},
				{Part: []int{1}, Peek: true},
				{Part: []int{1}, Specifier: goimap.PartSpecifierMIME, Peek: true},
			},
			BinarySection:     []*goimap.FetchItemBinarySection{{Part: []int{1}, Peek: true}},
			BinarySectionSize: []*goimap.FetchItemBinarySectionSize{{Part: []int{1}}},
		}).Collect()
		if err != nil || len(msgs) != 1 {
			t.Errorf("%s: %v", files[i], err)
			continue
		}
		m := msgs[0]
		got := m.FindBodySection(full)
		if int64(len(got)) != m.RFC822Size {
			t.Errorf("%s: BODY[] %d bytes, RFC822.SIZE %d", files[i], len(got), m.RFC822Size)
		}
		if want := crlf(b); !bytes.Contains(b, []byte("\r")) && !bytes.Equal(got, want) {
			t.Errorf("%s: BODY[] differs from the delivered message (%d vs %d bytes)", files[i], len(got), len(want))
		}
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("session broken: %v", err)
	}
	data, err := c.Search(&goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "Subject", Value: "TRUNCATED"}}}, nil).Wait()
	if err != nil || len(data.AllSeqNums()) != 1 {
		t.Errorf("SEARCH SUBJECT truncated: %v %v", data, err)
	}
	data, err = c.Search(&goimap.SearchCriteria{Body: []string{"bottom"}}, nil).Wait()
	if err != nil || len(data.AllSeqNums()) != 1 {
		t.Errorf("SEARCH BODY bottom (60 levels down): %v %v", data, err)
	}

	for _, cmd := range []func() error{
		func() error { return c.Create("Work/2024", nil).Wait() },
		func() error { return c.Rename("Work", "Jobs", nil).Wait() },
		func() error { return c.Subscribe("Jobs/2024").Wait() },
	} {
		if err := cmd(); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := c.Status("Jobs/2024", &goimap.StatusOptions{NumMessages: true}).Wait(); err != nil || *st.NumMessages != 0 {
		t.Errorf("STATUS after RENAME: %v %v", st, err)
	}
	if err := c.Delete("Jobs/2024").Wait(); err != nil {
		t.Fatal(err)
	}
	var ie *goimap.Error
	if err := c.Create("../../etc", nil).Wait(); !errors.As(err, &ie) || ie.Type != goimap.StatusResponseTypeNo {
		t.Errorf("CREATE ../../etc: %v", err)
	}
}

func TestMaildirChanges(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := startMaildir(t, dir)
	for i := range 4 {
		e.deliver(t, msg(i))
	}
	a := e.login(t, nil)
	sel, err := a.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 4 {
		t.Fatalf("SELECT: %+v %v", sel, err)
	}
	uidValidity := sel.UIDValidity

	events := make(chan string, 20)
	b := e.login(t, &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				events <- fmt.Sprintf("EXISTS %d", *d.NumMessages)
			}
		},
		Expunge: func(seq uint32) { events <- fmt.Sprintf("EXPUNGE %d", seq) },
		Fetch:   func(m *imapclient.FetchMessageData) { events <- "FETCH" },
	})
	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	expect := func(want string, within time.Duration) {
		t.Helper()
		select {
		case got := <-events:
			if got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		case <-time.After(within):
			t.Fatalf("no %q within %v", want, within)
		}
	}
	idle, err := b.Idle()
	if err != nil {
		t.Fatal(err)
	}
	// The promise: a delivery shows in IDLE within a second.
	e.deliver(t, msg(5))
	expect("EXISTS 5", time.Second)
	// A file another program drops into new/ is found by the poll.
	if err := os.WriteFile(filepath.Join(dir, "mail", home, "Maildir", "new", "1700000000.handmade.host"), []byte(msg(6)), 0o600); err != nil {
		t.Fatal(err)
	}
	expect("EXISTS 6", 3*time.Second)
	// Another session's flag change and expunge.
	if err := a.Store(goimap.SeqSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	expect("FETCH", 2*time.Second)
	if _, err := a.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	expect("EXPUNGE 1", 2*time.Second)
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}

	// Flags are mirrored into the file names, where mutt sees them.
	if err := a.Store(goimap.SeqSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagSeen, goimap.FlagFlagged, "$Work"}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	cur, _ := filepath.Glob(filepath.Join(dir, "mail", home, "Maildir", "cur", "*:2,FS"))
	if len(cur) != 1 {
		t.Errorf("no file with :2,FS in cur/: %v", cur)
	}

	// COPY and MOVE with UIDPLUS; APPEND with flags and date.
	cd, err := a.Copy(goimap.SeqSetNum(1, 2), "Archive").Wait()
	if err != nil || cd.DestUIDs.String() != "1:2" {
		t.Errorf("COPY: %+v %v", cd, err)
	}
	md, err := a.Move(goimap.SeqSetNum(1), "Trash").Wait()
	if err != nil || md.DestUIDs.String() != "1" {
		t.Errorf("MOVE: %+v %v", md, err)
	}
	ac := a.Append("Drafts", int64(len(msg(9))), &goimap.AppendOptions{Flags: []goimap.Flag{goimap.FlagDraft}, Time: time.Date(2021, 1, 2, 3, 4, 5, 0, time.UTC)})
	ac.Write([]byte(msg(9)))
	ac.Close()
	if ad, err := ac.Wait(); err != nil || ad.UID != 1 {
		t.Errorf("APPEND: %+v %v", ad, err)
	}
	if _, err := a.Copy(goimap.SeqSetNum(1), "Nowhere").Wait(); !strings.Contains(fmt.Sprint(err), "TRYCREATE") {
		t.Errorf("COPY to a missing folder: %v", err)
	}
	msgs, err := a.Fetch(goimap.SeqSetNum(1, 2, 3, 4), &goimap.FetchOptions{UID: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var uids []goimap.UID
	for _, m := range msgs {
		uids = append(uids, m.UID)
	}

	// After a restart UIDs and UIDVALIDITY are the same.
	e.stop()
	e2 := startMaildir(t, dir)
	c := e2.login(t, nil)
	sel, err = c.Select("INBOX", nil).Wait()
	if err != nil || sel.UIDValidity != uidValidity {
		t.Fatalf("after restart: %+v %v (UIDVALIDITY was %d)", sel, err, uidValidity)
	}
	msgs, err = c.Fetch(goimap.SeqSetNum(1, 2, 3, 4), &goimap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil || len(msgs) != len(uids) {
		t.Fatalf("after restart: %d messages, %v", len(msgs), err)
	}
	for i, m := range msgs {
		if m.UID != uids[i] {
			t.Errorf("message %d: UID %d after restart, was %d", i+1, m.UID, uids[i])
		}
	}
	if _, err := c.Select("Trash", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err = c.Fetch(goimap.SeqSetNum(1), &goimap.FetchOptions{Flags: true}).Collect()
	if err != nil || len(msgs) != 1 || !slices.Contains(msgs[0].Flags, "$Work") || !slices.Contains(msgs[0].Flags, goimap.FlagFlagged) {
		t.Errorf("the moved message's flags after the restart: %v %v", msgs, err)
	}
}

// A subscription outlives its folder (RFC 9051 §6.3.7): LIST (SUBSCRIBED)
// shows it as \NonExistent, from maildir's Subscriptions.
func TestMaildirSubscriptionOfDeletedFolder(t *testing.T) {
	t.Parallel()
	e := startMaildir(t, t.TempDir())
	c := e.login(t, nil)
	for _, cmd := range []*imapclient.Command{c.Create("Old", nil), c.Subscribe("Old"), c.Delete("Old"), c.Subscribe("Never")} {
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	l, err := c.List("", "*", &goimap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string][]goimap.MailboxAttr{}
	for _, d := range l {
		found[d.Mailbox] = d.Attrs
	}
	for _, n := range []string{"Old", "Never"} {
		if a := found[n]; !slices.Contains(a, goimap.MailboxAttrNonExistent) || !slices.Contains(a, goimap.MailboxAttrSubscribed) {
			t.Errorf("%s: %v (all: %v)", n, a, found)
		}
	}
	if _, ok := found["INBOX"]; !ok {
		t.Errorf("INBOX (subscribed by default) missing: %v", found)
	}
}

// TestMaildirInternalDateWhenAsked: a scan reads no file's date (the
// Maildir store's dates are lazy); FETCH INTERNALDATE and SEARCH SINCE or
// BEFORE read them then, from the files as they are at that moment.
func TestMaildirInternalDateWhenAsked(t *testing.T) {
	t.Parallel()
	e := startMaildir(t, t.TempDir())
	for i := range 3 {
		e.deliver(t, msg(i))
	}
	c := e.login(t, nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	// Set after the SELECT: the dates shown must be read after it.
	newDir := filepath.Join(e.dir, "mail", home, "Maildir", "new")
	names, err := os.ReadDir(newDir)
	if err != nil || len(names) != 3 {
		t.Fatalf("new/: %v %v", names, err)
	}
	slices.SortFunc(names, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	dates := []time.Time{
		time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC),
		time.Date(2022, 3, 4, 5, 6, 7, 0, time.UTC),
		time.Date(2023, 3, 4, 5, 6, 7, 0, time.UTC),
	}
	for i, n := range names { // unique names sort in delivery order
		if err := os.Chtimes(filepath.Join(newDir, n.Name()), dates[i], dates[i]); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := c.Fetch(goimap.SeqSetNum(1, 2, 3), &goimap.FetchOptions{InternalDate: true}).Collect()
	if err != nil || len(msgs) != 3 {
		t.Fatalf("FETCH INTERNALDATE: %v %v", msgs, err)
	}
	for i, m := range msgs {
		if !m.InternalDate.Equal(dates[i]) {
			t.Errorf("message %d: INTERNALDATE %v, want %v", i+1, m.InternalDate, dates[i])
		}
	}
	cases := []struct {
		criteria goimap.SearchCriteria
		want     []uint32
	}{
		{goimap.SearchCriteria{Since: dates[1]}, []uint32{2, 3}},
		{goimap.SearchCriteria{Before: dates[1]}, []uint32{1}},
		{goimap.SearchCriteria{Not: []goimap.SearchCriteria{{Since: dates[2]}}}, []uint32{1, 2}},
	}
	for _, tc := range cases {
		data, err := c.Search(&tc.criteria, nil).Wait()
		if err != nil || !slices.Equal(data.AllSeqNums(), tc.want) {
			t.Errorf("SEARCH %+v: %v %v, want %v", tc.criteria, data.AllSeqNums(), err, tc.want)
		}
	}
}

// TestMaildirInternalDateOfExpunged: a message another session expunged
// before this one read its (lazy) date gets no FETCH response, and the
// FETCH a NO [EXPUNGEISSUED], rather than an INTERNALDATE of the year 1
// (imaptest's stress: "INTERNALDATE changed").
func TestMaildirInternalDateOfExpunged(t *testing.T) {
	t.Parallel()
	e := startMaildir(t, t.TempDir())
	for i := range 3 {
		e.deliver(t, msg(i))
	}
	a := e.login(t, nil)
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	b := e.login(t, nil)
	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := b.Store(goimap.SeqSetNum(2), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	// Not told of the expunge yet (no EXPUNGE during a FETCH).
	msgs, err := a.Fetch(goimap.SeqSetNum(1, 2, 3), &goimap.FetchOptions{UID: true, InternalDate: true}).Collect()
	var seqs []uint32
	for _, m := range msgs {
		seqs = append(seqs, m.SeqNum)
		if m.InternalDate.Year() < 2000 {
			t.Errorf("message %d: INTERNALDATE %v", m.SeqNum, m.InternalDate)
		}
	}
	if !slices.Equal(seqs, []uint32{1, 3}) {
		t.Errorf("FETCH responses for %v, want messages 1 and 3", seqs)
	}
	var ie *goimap.Error
	if !errors.As(err, &ie) || ie.Code != "EXPUNGEISSUED" {
		t.Errorf("FETCH: %v, want NO [EXPUNGEISSUED]", err)
	}
}

// TestMaildirFirstSelectAfterPrefetch: the first SELECT after LOGIN
// read INBOX ahead shows every message, as if the session had read the
// folder itself: of an account never opened (the read ahead commits the
// folder's first scan), and after a restart with mail delivered since
// (it commits what the scan found). A Sync beside another session's
// commit still pending is shown the last durable snapshot, without that
// commit's messages; LOGIN waits for the read ahead so that the client's
// first view has them.
func TestMaildirFirstSelectAfterPrefetch(t *testing.T) {
	t.Parallel()
	selectShows := func(e *maildirEnv, want uint32, when string) {
		t.Helper()
		c := e.login(t, nil)
		d, err := c.Select("INBOX", nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if d.NumMessages != want {
			t.Errorf("%s: SELECT after LOGIN shows %d messages, want %d", when, d.NumMessages, want)
		}
		c.Logout().Wait()
	}
	for round := range 3 {
		dir := t.TempDir()
		e := startMaildir(t, dir)
		for i := range 5 {
			e.deliver(t, fmt.Sprintf("Subject: m%d\r\n\r\nbody\r\n", i))
		}
		selectShows(e, 5, fmt.Sprintf("round %d, account never opened", round))
		e.stop()
		e = startMaildir(t, dir)
		for i := range 3 {
			e.deliver(t, fmt.Sprintf("Subject: n%d\r\n\r\nbody\r\n", i))
		}
		selectShows(e, 8, fmt.Sprintf("round %d, after a restart and 3 deliveries", round))
	}
}
