package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"mailroom/internal/mailtest"
)

// TestCrashSafety kills `mailroom serve` with SIGKILL again and again
// under load on every way in (LMTP, the MX, submission to local users and
// through the queue to a remote sink, IMAP APPEND, MOVE and EXPUNGE),
// restarts it each time, and then checks the promises: every
// acknowledged message is there (lost = 0), no file is cut short or
// mixed up (torn = 0), every acknowledged IMAP change holds, the index
// agrees with the files (each SELECT counts what the folder holds, each
// message once) and UIDs given before a crash name the same message
// after it. Duplicates (a crash between the fsync and the reply, or
// between the remote's 250 and the queue's record) are allowed, counted
// and reported.
//
// The short form runs here (MAILROOM_CRASH_ROUNDS, default 3, and
// MAILROOM_CRASH_SESSIONS, default 5); bench/crash.sh runs the long one.
func TestCrashSafety(t *testing.T) {
	rounds := envInt(t, "MAILROOM_CRASH_ROUNDS", 3)
	sessions := envInt(t, "MAILROOM_CRASH_SESSIONS", 5)
	sink := startSink(t)
	cfg := strings.NewReplacer("%SINK%", sink.addr).Replace(crashConfig)
	cfgPath, dir := mailtest.WriteConfig(t, cfg)
	os.Mkdir(filepath.Join(dir, "data"), 0o700)
	st := newCrashState()

	var s *mailtest.Server
	for round := 0; round < rounds; round++ {
		s = mailtest.StartServerConfig(t, cfgPath, dir)
		if round == 0 {
			for _, u := range crashUsers {
				if out, code := s.Run(t, smtpPassword+"\n", "user", "add", u); code != 0 {
					t.Fatalf("user add: %d %s", code, out)
				}
			}
		}
		addrs := crashAddrs{lmtp: s.Addr(t, "lmtp", false), mx: s.Addr(t, "smtp", false), sub: s.Addr(t, "submission", false), imap: s.Addr(t, "imap", false)}
		if round > 0 {
			st.checkUIDs(t, addrs.imap, round)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := range sessions {
			wg.Go(func() { st.work(i, addrs, stop) })
		}
		// Let the load build up, then crash at a moment nobody chose.
		mailtest.Eventually(t, 30*time.Second, "some acknowledgements in this round", func() bool { return st.ackedSince(round) >= sessions })
		time.Sleep(time.Duration(randInt(700)) * time.Millisecond)
		s.Kill(t)
		close(stop)
		wg.Wait()
		st.endRound()
	}

	// The last start: the queue sends what it has, then everything is
	// checked against the files, the index and the sink.
	s = mailtest.StartServerConfig(t, cfgPath, dir)
	imapAddr := s.Addr(t, "imap", false)
	st.checkUIDs(t, imapAddr, rounds)
	s.Run(t, "", "queue", "flush")
	remote := st.remoteAcked()
	mailtest.Eventually(t, 120*time.Second, "the queue to hand every acknowledged message to the sink", func() bool {
		return sink.missing(remote) == 0
	})
	mailtest.Eventually(t, 60*time.Second, "the queue to empty", func() bool {
		out, _ := s.Run(t, "", "queue", "list")
		return !strings.Contains(out, "@")
	})
	local := st.checkFiles(t, filepath.Join(dir, "data", "mail"))
	st.checkIndex(t, imapAddr, filepath.Join(dir, "data", "mail"))
	rdup := sink.duplicates()
	t.Logf("CRASH rounds=%d sessions=%d acked=%d lost=%d duplicated=%d torn=%d remote_acked=%d remote_lost=%d remote_duplicated=%d imap_ops_acked=%d uids_checked=%d",
		rounds, sessions, st.total(), local.lost, local.dup, local.torn, len(remote), sink.missing(remote), rdup, st.imapOps, st.uidsChecked)
	if local.lost > 0 || local.torn > 0 {
		t.Errorf("%d acknowledged messages lost, %d torn", local.lost, local.torn)
	}
}

// crashConfig listens on every protocol and relays remote mail to the
// sink. The limits leave room for the sessions and their reconnections.
const crashConfig = `hostname = "mx.test"
data_dir = "%DATA%/data"
domains = ["example.org"]
[smtp]
listen = ["127.0.0.1:0"]
[submission]
listen = ["127.0.0.1:0"]
[lmtp]
listen = ["127.0.0.1:0"]
[imap]
listen = ["127.0.0.1:0"]
[relay]
smarthost = "%SINK%"
[queue]
retry = ["1s"]
[limits]
max_connections = 400
max_connections_per_ip = 200
`

var crashUsers = []string{"alice@example.org", "bob@example.org"}

type crashAddrs struct{ lmtp, mx, sub, imap string }

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

func randInt(n int64) int64 {
	v, _ := rand.Int(rand.Reader, big.NewInt(n))
	return v.Int64()
}

// sent is one message handed to the server.
type sent struct {
	text  string // as sent, LF line ends
	home  string // where it is delivered ("" for remote)
	round int
	// For IMAP messages: the folder it is in when every acknowledged
	// operation is applied, and whether an operation on it was cut off
	// by the crash (then either outcome is right).
	folder    string
	uncertain bool
	gone      bool // expunged (acknowledged)
	uid       imap.UID
	uv        uint32
}

// crashState is what the sessions had acknowledged.
type crashState struct {
	mu          sync.Mutex
	acked       map[string]*sent // Message-ID -> message
	round       int
	perRound    map[int]int
	imapOps     int
	uidsChecked int
}

func newCrashState() *crashState {
	return &crashState{acked: map[string]*sent{}, perRound: map[int]int{}}
}

func (st *crashState) ack(id string, m *sent) {
	st.mu.Lock()
	defer st.mu.Unlock()
	m.round = st.round
	st.acked[id] = m
	st.perRound[st.round]++
}

func (st *crashState) ackedSince(round int) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.perRound[round]
}

func (st *crashState) endRound() {
	st.mu.Lock()
	st.round++
	st.mu.Unlock()
}

func (st *crashState) total() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.acked)
}

func (st *crashState) remoteAcked() []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	var ids []string
	for id, m := range st.acked {
		if m.home == "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// message makes a message with a fresh Message-ID and a body that ends
// with a line naming it, so that a file cut short or mixed up shows.
func message(kind string) (id, text string) {
	var b [8]byte
	rand.Read(b[:])
	id = fmt.Sprintf("<%s-%s@client.test>", kind, hex.EncodeToString(b[:]))
	var body strings.Builder
	lines := 20 + randInt(150)
	for i := range lines {
		fmt.Fprintf(&body, "line %d of %s %s\n", i, id, strings.Repeat("x", int(randInt(60))))
	}
	return id, fmt.Sprintf("Message-ID: %s\nSubject: crash %s\n\n%sEND %s\n", id, kind, body.String(), id)
}

// work runs one session's kind of load until stop or the server dies.
func (st *crashState) work(i int, a crashAddrs, stop <-chan struct{}) {
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	switch i % 5 {
	case 3:
		st.imapWork(a.imap, crashUsers[i/5%len(crashUsers)], stop)
		return
	}
	for n := 0; !stopped(); n++ {
		rcpt := crashUsers[n%len(crashUsers)]
		home := "example.org/" + strings.TrimSuffix(rcpt, "@example.org")
		var err error
		var id, text string
		switch i % 5 {
		case 0:
			id, text = message("lmtp")
			_, err = lmtpSend(a.lmtp, "sender@remote.example", rcpt, text)
		case 1:
			id, text = message("mx")
			err = smtpSend(a.mx, nil, "sender@remote.example", rcpt, text)
		case 2:
			id, text = message("remote")
			rcpt, home = "friend@remote.example", ""
			err = smtpSend(a.sub, sasl.NewPlainClient("", crashUsers[0], smtpPassword), crashUsers[0], rcpt, text)
		case 4:
			id, text = message("sub")
			err = smtpSend(a.sub, sasl.NewPlainClient("", crashUsers[1], smtpPassword), crashUsers[1], rcpt, text)
		}
		if err != nil {
			return // the server is gone: this round is over for us
		}
		st.ack(id, &sent{text: text, home: home})
	}
}

// smtpSend sends one message over SMTP (with AUTH if auth is set) and
// returns nil only for a 250 at the end of DATA.
func smtpSend(addr string, auth sasl.Client, from, rcpt, msg string) error {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := gosmtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return err
	}
	if auth != nil {
		if err := c.Auth(auth); err != nil {
			return err
		}
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, crlf(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	c.Quit()
	return nil
}

// imapWork appends to Work, moves some of what it appended to Archive
// and expunges some, recording each acknowledged change.
func (st *crashState) imapWork(addr, user string, stop <-chan struct{}) {
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return
	}
	defer c.Close()
	if err := c.Login(user, smtpPassword).Wait(); err != nil {
		return
	}
	c.Create("Work", nil).Wait() // exists after the first round
	if _, err := c.Select("Work", nil).Wait(); err != nil {
		return
	}
	home := "example.org/" + strings.TrimSuffix(user, "@example.org")
	var mine []*sent
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		switch {
		case n%4 == 2 && len(mine) > 0:
			m := mine[0]
			mine = mine[1:]
			st.setUncertain(m, true)
			data, err := c.Move(imap.UIDSetNum(m.uid), "Archive").Wait()
			if err != nil {
				return
			}
			st.update(func() {
				m.folder, m.uncertain = "Archive", false
				if uids, ok := data.DestUIDs.(imap.UIDSet); ok && len(uids) == 1 && uids[0].Start == uids[0].Stop {
					m.uid, m.uv = uids[0].Start, data.UIDValidity
				} else {
					m.uid = 0
				}
				st.imapOps++
			})
		case n%4 == 3 && len(mine) > 0:
			m := mine[0]
			mine = mine[1:]
			st.setUncertain(m, true)
			set := imap.UIDSetNum(m.uid)
			if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				return
			}
			if err := c.UIDExpunge(set).Close(); err != nil {
				return
			}
			st.update(func() { m.gone, m.uncertain = true, false; st.imapOps++ })
		default:
			id, text := message("append")
			m := &sent{text: text, home: home, folder: "Work", uncertain: true}
			st.ack(id, m) // uncertain until APPEND's OK
			cmd := c.Append("Work", int64(len(crlf(text))), nil)
			io.WriteString(cmd, crlf(text))
			cmd.Close()
			data, err := cmd.Wait()
			if err != nil {
				st.update(func() { m.gone, m.uncertain = false, true })
				return
			}
			st.update(func() { m.uncertain, m.uid, m.uv = false, data.UID, data.UIDValidity; st.imapOps++ })
			mine = append(mine, m)
		}
	}
}

func (st *crashState) update(fn func()) {
	st.mu.Lock()
	defer st.mu.Unlock()
	fn()
}

func (st *crashState) setUncertain(m *sent, u bool) { st.update(func() { m.uncertain = u }) }

// checkUIDs logs in after a restart and checks that every IMAP message
// acknowledged with a UID is still under it.
func (st *crashState) checkUIDs(t *testing.T, addr string, round int) {
	t.Helper()
	for _, user := range crashUsers {
		home := "example.org/" + strings.TrimSuffix(user, "@example.org")
		c, err := imapclient.DialInsecure(addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(user, smtpPassword).Wait(); err != nil {
			t.Fatal(err)
		}
		for _, folder := range []string{"Work", "Archive"} {
			sel, err := c.Select(folder, nil).Wait()
			if err != nil {
				continue // not made yet
			}
			msgs, err := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
			if err != nil {
				t.Fatalf("UID FETCH in %s: %v", folder, err)
			}
			byUID := map[imap.UID]string{}
			for _, m := range msgs {
				if m.Envelope != nil {
					byUID[m.UID] = m.Envelope.MessageID
				}
			}
			st.mu.Lock()
			for id, m := range st.acked {
				if m.home != home || m.folder != folder || m.uncertain || m.gone || m.uid == 0 {
					continue
				}
				st.uidsChecked++
				switch {
				case m.uv != sel.UIDValidity:
					t.Errorf("after crash %d: %s %s: UIDVALIDITY %d, was %d when %s was acknowledged", round, user, folder, sel.UIDValidity, m.uv, id)
				case "<"+byUID[m.uid]+">" != id && byUID[m.uid] != id:
					t.Errorf("after crash %d: %s %s UID %d is %q, was %s", round, user, folder, m.uid, byUID[m.uid], id)
				}
			}
			st.mu.Unlock()
		}
		c.Logout().Wait()
		c.Close()
	}
}

type fileCounts struct{ lost, dup, torn int }

var messageIDRE = regexp.MustCompile(`(?m)^Message-ID: (<[^>]+@client\.test>)$`)

// checkFiles reads every message file of every user: each must end with
// the message as sent (torn otherwise), each acknowledged message must be
// there (in its folder, for IMAP ones), once or more (dup).
func (st *crashState) checkFiles(t *testing.T, root string) fileCounts {
	t.Helper()
	type place struct{ home, folder string }
	found := map[string][]place{}
	var res fileCounts
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, user := range crashUsers {
		home := "example.org/" + strings.TrimSuffix(user, "@example.org")
		md := filepath.Join(root, home, "Maildir")
		filepath.WalkDir(md, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			sub := filepath.Base(filepath.Dir(p))
			if sub != "new" && sub != "cur" {
				return nil
			}
			folder := strings.TrimPrefix(filepath.Base(filepath.Dir(filepath.Dir(p))), ".")
			if folder == "Maildir" {
				folder = "INBOX"
			}
			b, _ := os.ReadFile(p)
			m := messageIDRE.FindSubmatch(b)
			if m == nil {
				res.torn++
				t.Errorf("%s: no Message-ID of ours (%d bytes)", p, len(b))
				return nil
			}
			id := string(m[1])
			if orig := st.acked[id]; orig != nil && !strings.HasSuffix(string(b), orig.text) {
				res.torn++
				t.Errorf("%s: %s is not the message as sent (%d bytes, sent %d)", p, id, len(b), len(orig.text))
			} else if orig == nil && !strings.Contains(string(b), "END "+id+"\n") {
				res.torn++
				t.Errorf("%s: %s (never acknowledged) is cut short", p, id)
			}
			found[id] = append(found[id], place{home, folder})
			return nil
		})
	}
	for id, m := range st.acked {
		if m.home == "" {
			continue
		}
		places := found[id]
		if len(places) > 1 {
			res.dup += len(places) - 1
		}
		want := m.folder
		if want == "" {
			want = "INBOX"
		}
		switch {
		case m.uncertain:
			// cut off by a crash: anywhere once, or nowhere
		case m.gone:
			if len(places) > 0 {
				t.Errorf("%s was expunged (acknowledged) but is in %v", id, places)
			}
		case len(places) == 0:
			res.lost++
			t.Errorf("%s (acknowledged in round %d for %s %s) is lost", id, m.round, m.home, want)
		case places[0].home != m.home || places[0].folder != want:
			res.lost++
			t.Errorf("%s is in %v, want %s %s", id, places, m.home, want)
		}
	}
	return res
}

// checkIndex logs in and compares each folder's SELECT and its messages'
// Message-IDs with the files.
func (st *crashState) checkIndex(t *testing.T, addr, root string) {
	t.Helper()
	for _, user := range crashUsers {
		home := "example.org/" + strings.TrimSuffix(user, "@example.org")
		c, err := imapclient.DialInsecure(addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(user, smtpPassword).Wait(); err != nil {
			t.Fatal(err)
		}
		for folder, dirName := range map[string]string{"INBOX": "", "Work": ".Work", "Archive": ".Archive"} {
			sel, err := c.Select(folder, nil).Wait()
			if err != nil {
				continue
			}
			md := filepath.Join(root, home, "Maildir", dirName)
			files := countFiles(filepath.Join(md, "new")) + countFiles(filepath.Join(md, "cur"))
			if int(sel.NumMessages) != files {
				t.Errorf("%s %s: SELECT says %d messages, the folder holds %d files", user, folder, sel.NumMessages, files)
			}
			if sel.NumMessages == 0 {
				continue
			}
			msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
			if err != nil {
				t.Fatalf("FETCH %s: %v", folder, err)
			}
			seen := map[imap.UID]bool{}
			for _, m := range msgs {
				if seen[m.UID] {
					t.Errorf("%s %s: UID %d twice", user, folder, m.UID)
				}
				seen[m.UID] = true
				if m.Envelope == nil || m.Envelope.MessageID == "" {
					t.Errorf("%s %s: UID %d has no Message-ID in its envelope", user, folder, m.UID)
				}
			}
			if len(msgs) != files {
				t.Errorf("%s %s: FETCH gave %d messages for %d files", user, folder, len(msgs), files)
			}
		}
		c.Logout().Wait()
		c.Close()
	}
}

// sink is the remote MTA the queue relays to: it counts each Message-ID
// it accepts.
type sink struct {
	addr string
	mu   sync.Mutex
	got  map[string]int
}

func startSink(t *testing.T) *sink {
	t.Helper()
	k := &sink{got: map[string]int{}}
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) { return &sinkSession{k: k}, nil }))
	srv.Domain = "sink.test"
	srv.AllowInsecureAuth = true
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return k
}

func (k *sink) missing(ids []string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, id := range ids {
		if k.got[id] == 0 {
			n++
		}
	}
	return n
}

func (k *sink) duplicates() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, c := range k.got {
		n += max(c-1, 0)
	}
	return n
}

type sinkSession struct{ k *sink }

func (s *sinkSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (s *sinkSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (s *sinkSession) Reset()                                 {}
func (s *sinkSession) Logout() error                          { return nil }
func (s *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if m := regexp.MustCompile(`(?m)^Message-ID: (<[^>]+>)\r?$`).FindSubmatch(b); m != nil {
		s.k.mu.Lock()
		s.k.got[string(m[1])]++
		s.k.mu.Unlock()
	}
	return nil
}
