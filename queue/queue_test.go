package queue

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mailroom/internal/mailtest"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"
)

// sent is one Send call seen by fakeTransport.
type sent struct {
	At   time.Time
	From string
	To   []string
	Body string
}

// fakeTransport records every Send and answers with reply.
type fakeTransport struct {
	mu    sync.Mutex
	calls []sent
	reply func(n int, msg *Message) error // n counts calls from 0
}

func (f *fakeTransport) Send(ctx context.Context, msg *Message) error {
	b, err := io.ReadAll(io.NewSectionReader(msg.Body, 0, msg.Size))
	if err != nil {
		return err
	}
	f.mu.Lock()
	n := len(f.calls)
	f.calls = append(f.calls, sent{At: time.Now(), From: msg.From, To: slices.Clone(msg.To), Body: string(b)})
	f.mu.Unlock()
	if f.reply == nil {
		return nil
	}
	return f.reply(n, msg)
}

func (f *fakeTransport) sent() []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// localBox collects local deliveries (bounces to local senders).
type localBox struct {
	mu   sync.Mutex
	msgs []sent
}

func (l *localBox) deliver(ctx context.Context, from, rcpt string, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, sent{At: time.Now(), From: from, To: []string{rcpt}, Body: string(b)})
	return nil
}

func (l *localBox) all() []sent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.msgs)
}

func isLocal(ctx context.Context, rcpt string) bool { return strings.HasSuffix(rcpt, "@example.org") }

// logBuf is a concurrency-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type harness struct {
	q     *Queue
	db    *bolt.DB
	dir   string
	tr    *fakeTransport
	local *localBox
	log   *logBuf
	opts  Options
	stop  func()
}

// newHarness opens a queue in a fresh directory (call it inside the
// synctest bubble). Run is started unless noRun.
func newHarness(t *testing.T, tr *fakeTransport, adjust func(*Options)) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{dir: dir, tr: tr, local: &localBox{}, log: &logBuf{}}
	h.opts = Options{
		Dir: filepath.Join(dir, "queue"), Hostname: "mx.test", Transport: tr,
		Local: isLocal, DeliverLocal: h.local.deliver,
		Retry:       []time.Duration{5 * time.Minute, 10 * time.Minute, time.Hour},
		MaxLifetime: 5 * time.Hour, DelayWarning: 2 * time.Hour, Concurrency: 4,
	}
	if adjust != nil {
		adjust(&h.opts)
	}
	h.open(t)
	t.Cleanup(func() { h.close() })
	return h
}

func (h *harness) open(t *testing.T) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(h.dir, "mailroom.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.db = db
	opts := h.opts
	opts.DB = db
	opts.Logger = slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Panics = mailtest.Panics
	q, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.q = q
}

func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		h.q.Run(ctx)
		close(done)
	}()
	h.stop = func() {
		cancel()
		<-done
		h.stop = nil
	}
}

func (h *harness) close() {
	if h.stop != nil {
		h.stop()
	}
	if h.db != nil {
		h.db.Close()
		h.db = nil
	}
}

// bodyExists is for tests: whether id's body file is on disk.
func (q *Queue) bodyExists(id string) bool {
	_, err := os.Stat(q.bodyPath(id))
	return err == nil
}

// settle lets fake time pass (bbolt's batch timer, retries) and waits
// until every goroutine of the bubble is idle.
func settle(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func (h *harness) enqueue(t *testing.T, from string, to []string, body string) string {
	t.Helper()
	id, err := h.q.Enqueue(t.Context(), from, to, strings.NewReader(body))
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return id
}

func (h *harness) records(t *testing.T) []*record {
	t.Helper()
	var out []*record
	h.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMsgs).ForEach(func(k, v []byte) error {
			rec, err := decodeRecord(v)
			if err != nil {
				t.Errorf("record %s: %v", k, err)
				return nil
			}
			out = append(out, rec)
			return nil
		})
	})
	return out
}

const testMsg = "From: alice@example.org\nTo: bob@example.net\nSubject: hello\n\nbody line\n"

func temp(code string) error {
	return &Error{Status: code, Diag: "smtp; 451 " + code + " try later", RemoteMTA: "mx.example.net", Err: errors.New("451 " + code + " try later")}
}

func perm(code string) error {
	return &Error{Perm: true, Status: code, Diag: "smtp; 550 " + code + " no such user", RemoteMTA: "mx.example.net", Err: errors.New("550 " + code + " no such user")}
}

func TestEnqueueSendsAndForgets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{}
		h := newHarness(t, tr, nil)
		id := h.enqueue(t, "alice@example.org", []string{"bob@example.net", "carol@example.net", "dan@other.example", "BOB@example.net"}, testMsg)
		if !h.q.bodyExists(id) {
			t.Fatal("no body file after Enqueue")
		}
		h.run()
		settle(time.Second)
		calls := tr.sent()
		if len(calls) != 2 {
			t.Fatalf("%d Send calls, want 2 (one per domain): %+v", len(calls), calls)
		}
		if !slices.Equal(calls[0].To, []string{"bob@example.net", "carol@example.net"}) || !slices.Equal(calls[1].To, []string{"dan@other.example"}) {
			t.Errorf("recipients grouped as %v and %v", calls[0].To, calls[1].To)
		}
		want := strings.ReplaceAll(testMsg, "\n", "\r\n")
		if calls[0].Body != want {
			t.Errorf("body %q, want %q", calls[0].Body, want)
		}
		if n := len(h.records(t)); n != 0 {
			t.Errorf("%d records left after delivery", n)
		}
		if h.q.bodyExists(id) {
			t.Error("body file left after delivery")
		}
		for _, want := range []string{"event=queued queue_id=" + id, "event=sent", "rcpt=dan@other.example"} {
			if !strings.Contains(h.log.String(), want) {
				t.Errorf("log lacks %q:\n%s", want, h.log)
			}
		}
	})
}

func TestEnqueueRefusesBadInput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, &fakeTransport{}, nil)
		for _, c := range []struct {
			from string
			to   []string
		}{
			{"alice@example.org", nil},
			{"not an address", []string{"bob@example.net"}},
			{"alice@example.org", []string{"bob@example.net\r\nRCPT TO:<x@y>"}},
			{"alice@example.org", []string{"../x@example.net"}},
		} {
			if _, err := h.q.Enqueue(t.Context(), c.from, c.to, strings.NewReader(testMsg)); err == nil {
				t.Errorf("Enqueue(%q, %q) succeeded", c.from, c.to)
			}
		}
		if files := queueFiles(t, h.opts.Dir); len(files) != 0 || len(h.records(t)) != 0 {
			t.Errorf("refused messages left files %v and %d records", files, len(h.records(t)))
		}
	})
}

func TestRetryBackoffThenSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{reply: func(n int, _ *Message) error {
			if n < 3 {
				return temp("4.7.1")
			}
			return nil
		}}
		h := newHarness(t, tr, func(o *Options) { o.DelayWarning = -1 })
		start := time.Now()
		h.enqueue(t, "alice@example.org", []string{"bob@example.net"}, testMsg)
		h.run()
		settle(3 * time.Hour)
		calls := tr.sent()
		if len(calls) != 4 {
			t.Fatalf("%d attempts, want 4", len(calls))
		}
		// Waits of 5m, 10m, 1h after each failure (plus bbolt's batch
		// delay of a few milliseconds).
		wantAt := []time.Duration{0, 5 * time.Minute, 15 * time.Minute, 75 * time.Minute}
		for i, c := range calls {
			if got := c.At.Sub(start); got < wantAt[i] || got > wantAt[i]+time.Second {
				t.Errorf("attempt %d at +%v, want +%v", i, got, wantAt[i])
			}
		}
		if n := len(h.records(t)); n != 0 {
			t.Errorf("%d records left", n)
		}
		if got := strings.Count(h.log.String(), "event=deferred"); got != 3 {
			t.Errorf("%d deferred records in the log, want 3", got)
		}
		if len(h.local.all()) != 0 {
			t.Errorf("a bounce was sent for a message that was delivered")
		}
	})
}

func TestPerRecipientResults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{reply: func(n int, msg *Message) error {
			var errs RcptErrors
			for _, to := range msg.To {
				switch {
				case strings.HasPrefix(to, "gone@"):
					errs = append(errs, perm("5.1.1"))
				case strings.HasPrefix(to, "busy@") && n == 0:
					errs = append(errs, temp("4.2.1"))
				default:
					errs = append(errs, nil)
				}
			}
			return errs
		}}
		h := newHarness(t, tr, nil)
		h.enqueue(t, "alice@example.org", []string{"ok@example.net", "gone@example.net", "busy@example.net"}, testMsg)
		h.run()
		settle(time.Minute)
		bounces := h.local.all()
		if len(bounces) != 1 {
			t.Fatalf("%d bounces, want 1", len(bounces))
		}
		d := parseDSN(t, bounces[0].Body)
		if len(d.rcpts) != 1 || d.rcpts[0].Get("Final-Recipient") != "rfc822; gone@example.net" {
			t.Errorf("bounce covers %v, want only gone@example.net", d.rcpts)
		}
		settle(10 * time.Minute)
		calls := tr.sent()
		if len(calls) != 2 || !slices.Equal(calls[1].To, []string{"busy@example.net"}) {
			t.Fatalf("calls %+v: want the 4xx recipient retried alone", calls)
		}
		if n := len(h.records(t)); n != 0 {
			t.Errorf("%d records left", n)
		}
		if len(h.local.all()) != 1 {
			t.Errorf("more than one bounce")
		}
	})
}

func TestExpiryDSN(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{reply: func(int, *Message) error { return temp("4.4.1") }}
		h := newHarness(t, tr, nil)
		start := time.Now()
		body := "From: alice@example.org\nTo: bob@example.net\nSubject: the report\nMessage-ID: <m1@example.org>\n\nsecret body\n"
		id := h.enqueue(t, "alice@example.org", []string{"bob@example.net"}, body)
		h.run()
		settle(6 * time.Hour)
		got := h.local.all()
		if len(got) != 2 {
			t.Fatalf("%d notifications to the sender, want a delay warning and a bounce", len(got))
		}
		warn, bounce := parseDSN(t, got[0].Body), parseDSN(t, got[1].Body)
		for _, m := range got {
			if m.From != "" || m.To[0] != "alice@example.org" {
				t.Errorf("DSN from <%s> to %v, want from <> to the sender", m.From, m.To)
			}
		}
		if got[0].At.Sub(start) < 2*time.Hour || got[0].At.Sub(start) > 2*time.Hour+time.Minute {
			t.Errorf("delay warning at +%v, want +2h", got[0].At.Sub(start))
		}
		if got[1].At.Sub(start) < 5*time.Hour || got[1].At.Sub(start) > 5*time.Hour+time.Minute {
			t.Errorf("bounce at +%v, want +5h (max lifetime)", got[1].At.Sub(start))
		}
		checkDSN(t, warn, "delayed", "4.4.1", id)
		checkDSN(t, bounce, "failed", "4.4.1", id)
		if warn.hdr.Get("Subject") == bounce.hdr.Get("Subject") {
			t.Errorf("delay warning and bounce have the same subject %q", warn.hdr.Get("Subject"))
		}
		if !strings.Contains(bounce.original, "Subject: the report\r\n") || !strings.Contains(bounce.original, "Message-ID: <m1@example.org>") {
			t.Errorf("bounce's original headers: %q", bounce.original)
		}
		if strings.Contains(bounce.original, "secret body") {
			t.Errorf("bounce returns the body: %q", bounce.original)
		}
		if !strings.Contains(h.log.String(), "event=expired") {
			t.Errorf("no expired record in the log:\n%s", h.log)
		}
		if n := len(h.records(t)); n != 0 {
			t.Errorf("%d records left", n)
		}
	})
}

// dsn is a parsed delivery status notification.
type dsn struct {
	hdr      mail.Header
	text     string
	perMsg   textproto.MIMEHeader
	rcpts    []textproto.MIMEHeader
	original string
}

// parseDSN parses a DSN as a mail client would and fails on anything
// RFC 3464/6522 do not allow.
func parseDSN(t *testing.T, raw string) dsn {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatalf("DSN does not parse: %v\n%s", err, raw)
	}
	var d dsn
	d.hdr = m.Header
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	global := params["report-type"] == "global-delivery-status" // RFC 6533
	if err != nil || mt != "multipart/report" || !(params["report-type"] == "delivery-status" || global) {
		t.Fatalf("DSN Content-Type %q (%v)", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var types []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("DSN part: %v", err)
		}
		b, _ := io.ReadAll(p)
		ct := p.Header.Get("Content-Type")
		types = append(types, strings.Split(ct, ";")[0])
		switch {
		case strings.HasPrefix(ct, "text/plain"):
			d.text = string(b)
		case ct == "message/delivery-status" || ct == "message/global-delivery-status":
			tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(b)))
			d.perMsg, err = tp.ReadMIMEHeader()
			if err != nil {
				t.Fatalf("per-message fields: %v", err)
			}
			for {
				h, err := tp.ReadMIMEHeader()
				if len(h) > 0 {
					d.rcpts = append(d.rcpts, h)
				}
				if err != nil {
					break
				}
			}
		case ct == "text/rfc822-headers" || ct == "message/global-headers":
			d.original = string(b)
		}
	}
	want := []string{"text/plain", "message/delivery-status", "text/rfc822-headers"}
	if global {
		want = []string{"text/plain", "message/global-delivery-status", "message/global-headers"}
	}
	if !slices.Equal(types, want) {
		t.Errorf("DSN parts %v", types)
	}
	return d
}

func checkDSN(t *testing.T, d dsn, action, status, id string) {
	t.Helper()
	if got := d.hdr.Get("From"); !strings.Contains(got, "MAILER-DAEMON@mx.test") {
		t.Errorf("From: %q", got)
	}
	if d.hdr.Get("Auto-Submitted") != "auto-replied" || d.hdr.Get("Message-Id") == "" || d.hdr.Get("Date") == "" {
		t.Errorf("DSN header lacks Auto-Submitted, Message-ID or Date: %v", d.hdr)
	}
	if _, err := d.hdr.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if d.perMsg.Get("Reporting-Mta") != "dns; mx.test" {
		t.Errorf("Reporting-MTA %q", d.perMsg.Get("Reporting-Mta"))
	}
	if d.perMsg.Get("X-Mailroom-Queue-Id") != id {
		t.Errorf("queue id %q, want %s", d.perMsg.Get("X-Mailroom-Queue-Id"), id)
	}
	if len(d.rcpts) != 1 {
		t.Fatalf("%d recipient groups, want 1", len(d.rcpts))
	}
	r := d.rcpts[0]
	for field, want := range map[string]string{
		"Final-Recipient": "rfc822; bob@example.net",
		"Action":          action,
		"Status":          status,
		"Remote-Mta":      "dns; mx.example.net",
		"Diagnostic-Code": "smtp; 451 4.4.1 try later",
	} {
		if got := r.Get(field); got != want {
			t.Errorf("%s: %q, want %q", field, got, want)
		}
	}
	if _, err := mail.ParseDate(r.Get("Last-Attempt-Date")); err != nil {
		t.Errorf("Last-Attempt-Date %q: %v", r.Get("Last-Attempt-Date"), err)
	}
	if (action == "delayed") != (r.Get("Will-Retry-Until") != "") {
		t.Errorf("Will-Retry-Until %q with action %s", r.Get("Will-Retry-Until"), action)
	}
	if !strings.Contains(d.text, "<bob@example.net>") {
		t.Errorf("human-readable part does not name the recipient: %q", d.text)
	}
}

func TestNullSenderIsNeverBounced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{reply: func(int, *Message) error { return perm("5.1.1") }}
		h := newHarness(t, tr, nil)
		h.enqueue(t, "", []string{"bob@example.net"}, testMsg)
		h.run()
		settle(time.Minute)
		if len(tr.sent()) != 1 {
			t.Errorf("%d sends, want 1 (the message itself, no bounce)", len(tr.sent()))
		}
		if len(h.local.all()) != 0 || len(h.records(t)) != 0 {
			t.Errorf("a bounce of a null-sender message: %v, records %d", h.local.all(), len(h.records(t)))
		}
		if !strings.Contains(h.log.String(), "event=bounced") {
			t.Errorf("the failure is not logged")
		}
		if files := queueFiles(t, h.opts.Dir); len(files) != 0 {
			t.Errorf("body files left after the bounce: %v", files)
		}
	})
}

func TestRemoteSenderBounceGoesOutWithNullSender(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{reply: func(n int, msg *Message) error {
			if msg.From == "" {
				return nil
			}
			return perm("5.1.1")
		}}
		h := newHarness(t, tr, nil)
		h.enqueue(t, "someone@remote.example", []string{"bob@example.net"}, testMsg)
		h.run()
		settle(time.Minute)
		calls := tr.sent()
		if len(calls) != 2 || calls[1].From != "" || !slices.Equal(calls[1].To, []string{"someone@remote.example"}) {
			t.Fatalf("calls %+v: want the message, then its bounce from <> to the sender", calls)
		}
		parseDSN(t, calls[1].Body)
		if files := queueFiles(t, h.opts.Dir); len(files) != 0 {
			t.Errorf("body files left after the bounce was sent: %v", files)
		}
	})
}

func TestRestartDeliversExactlyOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The peer accepts a@ at once; b@ only after the restart.
		var restarted bool
		var mu sync.Mutex
		count := map[string]int{} // accepted copies per recipient and body
		tr := &fakeTransport{reply: func(n int, msg *Message) error {
			mu.Lock()
			defer mu.Unlock()
			b, _ := io.ReadAll(io.NewSectionReader(msg.Body, 0, msg.Size))
			var errs RcptErrors
			for _, to := range msg.To {
				if strings.HasPrefix(to, "b@") && !restarted {
					errs = append(errs, temp("4.3.0"))
				} else {
					count[to+" "+string(b)]++
					errs = append(errs, nil)
				}
			}
			return errs
		}}
		h := newHarness(t, tr, nil)
		var ids []string
		for i := range 5 {
			ids = append(ids, h.enqueue(t, "alice@example.org", []string{"a@example.net", "b@example.net"}, fmt.Sprintf("Subject: %d\n\nx\n", i)))
		}
		h.run()
		settle(time.Second)
		h.close()
		mu.Lock()
		restarted = true
		mu.Unlock()
		h.open(t)
		if n := len(h.records(t)); n != 5 {
			t.Fatalf("%d records after restart, want 5", n)
		}
		h.run()
		settle(6 * time.Minute)
		for i := range 5 {
			for _, to := range []string{"a@example.net", "b@example.net"} {
				key := fmt.Sprintf("%s Subject: %d\r\n\r\nx\r\n", to, i)
				if count[key] != 1 {
					t.Errorf("message %d sent to %s %d times, want 1", i, to, count[key])
				}
			}
		}
		if n := len(h.records(t)); n != 0 {
			t.Errorf("%d records left", n)
		}
		for _, id := range ids {
			if h.q.bodyExists(id) {
				t.Errorf("body %s left", id)
			}
		}
	})
}

func TestShutdownGrace(t *testing.T) {
	for _, c := range []struct {
		name      string
		takes     time.Duration // how long the peer takes to answer
		wantState State
		attempts  int
	}{
		{"finishes within the grace", 5 * time.Second, StateSent, 1},
		{"cut off after the grace", time.Minute, StatePending, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// The peer answers after c.takes; the attempt gives up
				// when its context ends.
				tr := &fakeTransport{}
				var sendCtx context.Context
				h := newHarness(t, tr, func(o *Options) {
					o.ShutdownGrace = 10 * time.Second
					o.Transport = transportFunc(func(ctx context.Context, msg *Message) error {
						sendCtx = ctx
						select {
						case <-time.After(c.takes):
							return tr.Send(ctx, msg)
						case <-ctx.Done():
							return ctx.Err()
						}
					})
				})
				h.enqueue(t, "alice@example.org", []string{"bob@example.net"}, testMsg)
				h.run()
				settle(time.Second)
				h.stop()
				if sendCtx == nil {
					t.Fatal("no attempt was made")
				}
				h.db.Close()
				h.db = nil
				h.open(t)
				recs := h.records(t)
				switch c.wantState {
				case StateSent:
					if len(recs) != 0 || len(tr.sent()) != 1 {
						t.Errorf("records %+v, sends %d: want the message sent once and gone", recs, len(tr.sent()))
					}
				default:
					if len(recs) != 1 || recs[0].Rcpts[0].State != c.wantState || recs[0].Rcpts[0].Attempts != c.attempts {
						t.Errorf("after an interrupted attempt: %+v", recs)
					}
				}
			})
		})
	}
}

type transportFunc func(ctx context.Context, msg *Message) error

func (f transportFunc) Send(ctx context.Context, msg *Message) error { return f(ctx, msg) }

func TestCorruptRecordAndBodyAreSetAside(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{}
		h := newHarness(t, tr, nil)
		good := h.enqueue(t, "alice@example.org", []string{"good@example.net"}, testMsg)
		badBody := h.enqueue(t, "alice@example.org", []string{"badbody@example.net"}, testMsg)
		badRec := h.enqueue(t, "alice@example.org", []string{"badrec@example.net"}, testMsg)
		h.close()
		// Damage one body (same size, one byte changed) and one record.
		p := h.q.bodyPath(badBody)
		b, _ := os.ReadFile(p)
		b[len(b)-3] ^= 0x20
		os.WriteFile(p, b, 0o600)
		db, _ := bolt.Open(filepath.Join(h.dir, "mailroom.db"), 0o600, nil)
		db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMsgs).Put([]byte(badRec), []byte(`{"v":1,"id":`)) })
		db.Close()

		h.open(t)
		h.run()
		settle(time.Second)
		calls := tr.sent()
		if len(calls) != 1 || calls[0].To[0] != "good@example.net" {
			t.Fatalf("sent %+v: want only the good message", calls)
		}
		list, err := h.q.List()
		if err != nil {
			t.Fatal(err)
		}
		held := map[string]string{}
		for _, inf := range list {
			if inf.Held {
				held[inf.ID] = inf.Reason
			}
		}
		if len(held) != 2 || !strings.Contains(held[badBody], "checksum") || held[badRec] == "" {
			t.Errorf("held %v, want %s (checksum) and %s", held, badBody, badRec)
		}
		if c := strings.Count(h.log.String(), "message set aside"); c != 2 {
			t.Errorf("%d set-aside errors logged, want 2:\n%s", c, h.log)
		}
		for _, id := range []string{badBody, badRec} {
			if err := h.q.Drop(id); err != nil {
				t.Errorf("Drop(%s): %v", id, err)
			}
		}
		if list, _ := h.q.List(); len(list) != 0 {
			t.Errorf("after drop: %+v", list)
		}
		_ = good
	})
}

// TestUnreadableHeldRecordIsListed: a held record that no longer decodes
// is still listed, with a reason saying so, and can be dropped.
func TestUnreadableHeldRecordIsListed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, &fakeTransport{}, nil)
		h.close()
		db, err := bolt.Open(filepath.Join(h.dir, "mailroom.db"), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketHeld).Put([]byte("0123456789ABCDEF"), []byte(`{"reason":`))
		}); err != nil {
			t.Fatal(err)
		}
		db.Close()
		h.open(t)
		list, err := h.q.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || !list[0].Held || !strings.Contains(list[0].Reason, "unreadable held record") {
			t.Fatalf("List = %+v, want the held record with its reason", list)
		}
		if err := h.q.Drop(list[0].ID); err != nil {
			t.Errorf("Drop: %v", err)
		}
	})
}

func TestMissingBodyIsSetAside(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, &fakeTransport{}, nil)
		id := h.enqueue(t, "alice@example.org", []string{"bob@example.net"}, testMsg)
		os.Remove(h.q.bodyPath(id))
		h.run()
		settle(time.Second)
		list, _ := h.q.List()
		if len(list) != 1 || !list[0].Held || !strings.Contains(list[0].Reason, "missing") {
			t.Errorf("list %+v", list)
		}
	})
}

func TestOrphanFilesRemovedAtOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, &fakeTransport{}, nil)
		id := h.enqueue(t, "alice@example.org", []string{"bob@example.net"}, testMsg)
		h.close()
		wrong := "0"
		if strings.HasSuffix(id, wrong) {
			wrong = "1"
		}
		for _, n := range []string{"ORPHAN0000000000", "0/ORPHAN0000000000", "Y/.tmp-1234", wrong + "/" + id, "stray"} {
			os.WriteFile(filepath.Join(h.opts.Dir, n), []byte("x"), 0o600)
		}
		h.open(t)
		if files := queueFiles(t, h.opts.Dir); len(files) != 1 || files[0] != h.q.bodyPath(id) {
			t.Errorf("files after open: %v", files)
		}
	})
}

// queueFiles lists the regular files under dir.
func queueFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestListFlushDrop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{reply: func(n int, _ *Message) error {
			if n == 0 {
				return temp("4.4.1")
			}
			return nil
		}}
		h := newHarness(t, tr, nil)
		id := h.enqueue(t, "alice@example.org", []string{"bob@example.net"}, testMsg)
		id2 := h.enqueue(t, "alice@example.org", []string{"carol@example.net"}, testMsg)
		if err := h.q.Drop(id2); err != nil {
			t.Fatal(err)
		}
		if err := h.q.Drop(id2); !errors.Is(err, ErrNotFound) {
			t.Errorf("second Drop: %v", err)
		}
		if err := h.q.Drop("../../etc"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Drop of a path: %v", err)
		}
		h.run()
		settle(time.Second)
		list, _ := h.q.List()
		if len(list) != 1 || list[0].ID != id || list[0].Rcpts[0].Attempts != 1 || list[0].Rcpts[0].LastError == "" {
			t.Fatalf("list %+v", list)
		}
		if !list[0].Rcpts[0].Next.After(time.Now().Add(4 * time.Minute)) {
			t.Errorf("next attempt %v, want in 5 minutes", list[0].Rcpts[0].Next)
		}
		if n, err := h.q.Flush(); err != nil || n != 1 {
			t.Errorf("Flush = %d, %v", n, err)
		}
		settle(time.Second)
		if len(tr.sent()) != 2 {
			t.Errorf("%d attempts after flush, want 2", len(tr.sent()))
		}
		if list, _ := h.q.List(); len(list) != 0 {
			t.Errorf("list after flush %+v", list)
		}
	})
}

func TestLocalRecipientFailurePermanent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, &fakeTransport{}, func(o *Options) {
			o.DeliverLocal = func(ctx context.Context, from, rcpt string, r io.Reader) error {
				return Permanent("5.1.1", errors.New("no such user"))
			}
		})
		h.enqueue(t, "someone@remote.example", []string{"nobody@example.org"}, testMsg)
		h.run()
		settle(time.Second)
		if !strings.Contains(h.log.String(), "event=bounced") || !strings.Contains(h.log.String(), "status=5.1.1") {
			t.Errorf("log:\n%s", h.log)
		}
	})
}

// TestFinishedRecordRemovedOnOpen: a record whose recipients are all done
// (a crash came between the last result and the removal) is removed with
// its body when the queue opens, not kept for ever unscheduled.
func TestFinishedRecordRemovedOnOpen(t *testing.T) {
	h := newHarness(t, &fakeTransport{}, nil)
	id := h.enqueue(t, "a@example.org", []string{"b@example.net"}, "Subject: x\r\n\r\nx\r\n")
	if err := h.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMsgs)
		rec, err := decodeRecord(b.Get([]byte(id)))
		if err != nil {
			return err
		}
		rec.Rcpts[0].State = StateNotified
		return b.Put([]byte(id), rec.encode())
	}); err != nil {
		t.Fatal(err)
	}
	h.close()
	h.open(t)
	if recs := h.records(t); len(recs) != 0 {
		t.Fatalf("%d records left", len(recs))
	}
	if _, err := os.Stat(h.q.bodyPath(id)); !os.IsNotExist(err) {
		t.Fatalf("body left behind: %v", err)
	}
}
