package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/mailenv"
	"mailroom/lmtp"
	"mailroom/queue"
)

// noTransport stands in while messages are put into a stopped server's
// queue; it is never asked to send.
type noTransport struct{}

func (noTransport) Send(context.Context, *queue.Message) error { return fmt.Errorf("not sending") }

// TestServeSendsQueuedMailThroughPostfix puts a message into the queue of
// a stopped server (as a crash would leave it), starts `mailroom serve`
// with a private Postfix as its smarthost, and checks that the message
// arrives intact, once, and that `mailroom queue list` then shows an
// empty queue through the control socket.
func TestServeSendsQueuedMailThroughPostfix(t *testing.T) {
	env := mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"bob@example.org"}})
	_, lmtpAddr, _ := mailenv.StartLMTP(t, env, lmtp.Options{})
	p := startPostfix(t, "lmtp:inet:"+lmtpAddr)

	cfgPath, dir := mailtest.WriteConfig(t, fmt.Sprintf(`hostname = "mailroom.test"
data_dir = "%%DATA%%"
domains = ["mailroom.test"]
[lmtp]
listen = ["127.0.0.1:0"]
[relay]
smarthost = %q
[queue]
retry = ["1s"]
`, p.addr()))
	db, err := bolt.Open(filepath.Join(dir, "mailroom.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(queue.Options{DB: db, Dir: filepath.Join(dir, "queue"), Hostname: "mailroom.test", Transport: noTransport{}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := q.Enqueue(t.Context(), "alice@mailroom.test", []string{"bob@example.org"}, strings.NewReader(queueMessage))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	out, code := mailtest.RunBinary(t, cfgPath, "", "queue", "list")
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "bob@example.org") {
		t.Fatalf("queue list without a server: exit %d\n%s", code, out)
	}

	srv := mailtest.StartServerConfig(t, cfgPath, dir)
	got := waitDelivered(t, p, env.MailRoot, map[string]int{"example.org/bob": 1}, nil)
	checkArrivedIntact(t, got["example.org/bob"][0].Data, "bob@example.org")
	mailtest.Eventually(t, 10*time.Second, "mailroom to log the message sent", func() bool {
		return strings.Contains(srv.Log(), "msg=sent queue_id="+id) && strings.Contains(srv.Log(), "event=sent")
	})
	if out, code := srv.Run(t, "", "queue", "list"); code != 0 || !strings.Contains(out, "queue is empty") {
		t.Errorf("queue list through the server: exit %d\n%s", code, out)
	}
	if out, code := srv.Run(t, "", "queue", "drop", id); code != 65 || !strings.Contains(out, "no such queued message") {
		t.Errorf("drop of a sent message: exit %d\n%s", code, out)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "queue")); len(entries) == 0 {
		t.Errorf("no queue directory")
	}
}

// TestServeRestartMidQueue stops `mailroom serve` (SIGTERM) while its
// queue is being worked off, starts it again on the same data, and checks
// that every message reached Postfix exactly once.
func TestServeRestartMidQueue(t *testing.T) {
	env := mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"bob@example.org"}})
	_, lmtpAddr, _ := mailenv.StartLMTP(t, env, lmtp.Options{})
	p := startPostfix(t, "lmtp:inet:"+lmtpAddr)
	cfgPath, dir := mailtest.WriteConfig(t, fmt.Sprintf(`hostname = "mailroom.test"
data_dir = "%%DATA%%"
domains = ["mailroom.test"]
[relay]
smarthost = %q
[queue]
retry = ["1s"]
concurrency = 2
`, p.addr()))
	// Postfix pauses a second at each RCPT, so the stop finds the queue
	// half done and a transaction under way (which the shutdown grace
	// lets finish).
	postconf := mailtest.NeedTool(t, "postconf")
	if out, err := exec.Command(postconf, "-c", p.etc, "-e", "smtpd_recipient_restrictions = permit_mynetworks, sleep 1, reject_unauth_destination").CombinedOutput(); err != nil {
		t.Fatalf("postconf: %v\n%s", err, out)
	}
	if out, err := p.cmd("reload"); err != nil {
		t.Fatalf("postfix reload: %v\n%s", err, out)
	}
	const n = 10
	db, err := bolt.Open(filepath.Join(dir, "mailroom.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(queue.Options{DB: db, Dir: filepath.Join(dir, "queue"), Hostname: "mailroom.test", Transport: noTransport{}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		msg := fmt.Sprintf("From: alice@mailroom.test\nSubject: restart %d\nMessage-ID: <r%d@mailroom.test>\nDate: Wed, 25 Nov 2026 08:00:00 +0000\n\nbody %d\n", i, i, i)
		if _, err := q.Enqueue(t.Context(), "alice@mailroom.test", []string{"bob@example.org"}, strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	srv := mailtest.StartServerConfig(t, cfgPath, dir)
	mailtest.Eventually(t, 20*time.Second, "a few messages sent", func() bool { return strings.Count(srv.Log(), "event=sent") >= 2 })
	srv.Stop(t)
	sent := strings.Count(srv.Log(), "event=sent")
	if sent >= n {
		t.Errorf("all %d messages went out before the stop; the restart was not tested", n)
	}
	srv2 := mailtest.StartServerConfig(t, cfgPath, dir)
	mailtest.Eventually(t, 30*time.Second, "the rest sent after the restart", func() bool {
		return sent+strings.Count(srv2.Log(), "event=sent") >= n && p.queueEmpty(t)
	})
	t.Logf("%d messages sent before the stop, %d after the restart", sent, strings.Count(srv2.Log(), "event=sent"))
	got := waitDelivered(t, p, env.MailRoot, map[string]int{"example.org/bob": n}, nil)
	seen := map[string]int{}
	for _, m := range got["example.org/bob"] {
		i := strings.Index(m.Data, "Subject: restart ")
		seen[strings.SplitN(m.Data[i:], "\n", 2)[0]]++
	}
	for i := range n {
		if c := seen[fmt.Sprintf("Subject: restart %d", i)]; c != 1 {
			t.Errorf("message %d arrived %d times, want 1", i, c)
		}
	}
	if out, code := srv2.Run(t, "", "queue", "list"); code != 0 || !strings.Contains(out, "queue is empty") {
		t.Errorf("queue list after the restart: exit %d\n%s", code, out)
	}
}
