package outbound

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	bolt "go.etcd.io/bbolt"

	"mailroom/internal/mailtest"
	"mailroom/queue"
)

// stack is a queue delivering through this package's Transport to fake
// MTAs, with bounces to local senders collected in memory.
type stack struct {
	t      *testing.T
	dir    string
	tr     *Transport
	db     *bolt.DB
	q      *queue.Queue
	cancel context.CancelFunc
	done   chan struct{}
	log    strings.Builder
	logMu  sync.Mutex

	mu      sync.Mutex
	bounces []string
}

func (s *stack) Write(p []byte) (int, error) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.Write(p)
}

func (s *stack) logText() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

func newStack(t *testing.T, tr *Transport) *stack {
	s := &stack{t: t, dir: t.TempDir(), tr: tr}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *stack) start() {
	db, err := bolt.Open(filepath.Join(s.dir, "mailroom.db"), 0o600, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	s.db = db
	q, err := queue.Open(queue.Options{
		DB: db, Dir: filepath.Join(s.dir, "queue"), Hostname: "mailroom.test", Transport: s.tr,
		Local: func(_ context.Context, rcpt string) bool { return strings.HasSuffix(rcpt, "@example.org") },
		DeliverLocal: func(_ context.Context, from, rcpt string, r io.Reader) error {
			b, _ := io.ReadAll(r)
			s.mu.Lock()
			s.bounces = append(s.bounces, string(b))
			s.mu.Unlock()
			return nil
		},
		Retry: []time.Duration{50 * time.Millisecond}, MaxLifetime: time.Hour, DelayWarning: -1, Concurrency: 8,
		ShutdownGrace: 100 * time.Millisecond,
		Logger:        slog.New(slog.NewTextHandler(s, nil)),
	})
	if err != nil {
		s.t.Fatal(err)
	}
	s.q = q
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		q.Run(ctx)
		close(s.done)
	}()
}

func (s *stack) stop() {
	if s.db == nil {
		return
	}
	s.cancel()
	<-s.done
	s.db.Close()
	s.db = nil
}

func (s *stack) enqueue(from string, to []string, body string) string {
	s.t.Helper()
	id, err := s.q.Enqueue(context.Background(), from, to, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	return id
}

func (s *stack) bounceCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bounces)
}

// empty reports whether the queue has nothing left.
func (s *stack) empty() bool {
	l, err := s.q.List()
	return err == nil && len(l) == 0
}

// perSubject counts the copies each recipient got of each Subject.
func perSubject(msgs []received) map[string]int {
	n := map[string]int{}
	for _, m := range msgs {
		subj := ""
		for _, l := range strings.Split(m.Data, "\r\n") {
			if s, ok := strings.CutPrefix(l, "Subject: "); ok {
				subj = s
				break
			}
		}
		for _, to := range m.To {
			n[to+" "+subj]++
		}
	}
	return n
}

func TestQueueRestartMidwayDeliversEachOnce(t *testing.T) {
	var blocking atomic.Bool
	release := make(chan struct{})
	var accepted atomic.Int32
	m := startMTA(t, "127.0.0.30", 0, func(m *fakeMTA) {
		m.rcpt = func(to string) error {
			if blocking.Load() && accepted.Add(1) > 10 {
				<-release // stuck until after the restart
				return &gosmtp.SMTPError{Code: 421, Message: "too late"}
			}
			return nil
		}
	})
	dns := &fakeDNS{ips: map[string][]string{"example.net": {"127.0.0.30"}}}
	blocking.Store(true)
	s := newStack(t, newTransport(t, dns, m.Port, nil))
	const n = 30
	for i := range n {
		s.enqueue("alice@example.org", []string{"bob@example.net"}, fmt.Sprintf("Subject: m%d\n\nbody %d\n", i, i))
	}
	mailtest.Eventually(t, 15*time.Second, "10 deliveries and the rest stuck", func() bool { return len(m.got()) >= 10 && accepted.Load() > 10 })
	s.stop() // a shutdown with messages queued and sessions in progress
	blocking.Store(false)
	close(release)
	s.start()
	mailtest.Eventually(t, 15*time.Second, "the queue to empty after the restart", s.empty)
	counts := perSubject(m.got())
	for i := range n {
		if c := counts[fmt.Sprintf("bob@example.net m%d", i)]; c != 1 {
			t.Errorf("message m%d delivered %d times, want 1", i, c)
		}
	}
	if s.bounceCount() != 0 {
		t.Errorf("%d bounces for messages that were delivered", s.bounceCount())
	}
}

func TestQueueTemporaryThenSuccess(t *testing.T) {
	var calls atomic.Int32
	m := startMTA(t, "127.0.0.31", 0, func(m *fakeMTA) {
		m.rcpt = func(to string) error {
			if calls.Add(1) <= 2 {
				return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "try again"}
			}
			return nil
		}
	})
	dns := &fakeDNS{ips: map[string][]string{"example.net": {"127.0.0.31"}}}
	s := newStack(t, newTransport(t, dns, m.Port, nil))
	s.enqueue("alice@example.org", []string{"bob@example.net"}, "Subject: retried\n\nx\n")
	mailtest.Eventually(t, 15*time.Second, "delivery", s.empty)
	if got := m.got(); len(got) != 1 {
		t.Fatalf("got %d copies", len(got))
	}
	if c := strings.Count(s.logText(), "event=deferred"); c != 2 || !strings.Contains(s.logText(), "event=sent") {
		t.Errorf("log has %d deferred records, want 2 then sent:\n%s", c, s.logText())
	}
}

func TestQueueOneOfThreeRefused(t *testing.T) {
	m := startMTA(t, "127.0.0.32", 0, func(m *fakeMTA) {
		m.rcpt = func(to string) error {
			if strings.HasPrefix(to, "gone@") {
				return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		}
	})
	dns := &fakeDNS{ips: map[string][]string{"example.net": {"127.0.0.32"}}}
	s := newStack(t, newTransport(t, dns, m.Port, nil))
	s.enqueue("alice@example.org", []string{"a@example.net", "gone@example.net", "c@example.net"}, "Subject: three\n\nx\n")
	mailtest.Eventually(t, 15*time.Second, "delivery and bounce", func() bool { return s.empty() && s.bounceCount() == 1 })
	got := m.got()
	if len(got) != 1 || strings.Join(got[0].To, ",") != "a@example.net,c@example.net" {
		t.Errorf("the MTA got %+v, want one copy for a@ and c@", got)
	}
	s.mu.Lock()
	b := s.bounces[0]
	s.mu.Unlock()
	if !strings.Contains(b, "Final-Recipient: rfc822; gone@example.net") || strings.Contains(b, "rfc822; a@example.net") {
		t.Errorf("bounce:\n%s", b)
	}
}

func TestQueueDropDuringDataRetriesWithoutBounce(t *testing.T) {
	var sessions, delivered atomic.Int32
	addr := rawServer(t, "127.0.0.33", 0, func(c net.Conn) {
		first := sessions.Add(1) == 1
		scripted([]string{"8BITMIME"}, func(c net.Conn, r *bufio.Reader) {
			if first {
				r.ReadString('\n') // take a line, then hang up
				return
			}
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			delivered.Add(1)
			fmt.Fprintf(c, "250 2.0.0 ok\r\n")
		})(c)
	})
	_, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscan(port, &p)
	dns := &fakeDNS{ips: map[string][]string{"example.net": {"127.0.0.33"}}}
	s := newStack(t, newTransport(t, dns, p, nil))
	s.enqueue("alice@example.org", []string{"a@example.net", "b@example.net"}, "Subject: dropped\n\nx\n")
	mailtest.Eventually(t, 15*time.Second, "delivery", s.empty)
	if delivered.Load() != 1 || s.bounceCount() != 0 {
		t.Errorf("delivered %d times with %d bounces; want once, none", delivered.Load(), s.bounceCount())
	}
}
