package socketmap_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailroom/internal/mailtest"
	"mailroom/internal/panics"
	"mailroom/socketmap"
)

// tables are what the tests serve: "mailbox" knows alice, fails for
// "broken" (a database that cannot be read) and returns a value with a
// line break for "bad"; "domain" knows example.org.
var tables = map[string]socketmap.Table{
	"mailbox": socketmap.TableFunc(func(ctx context.Context, key string) (string, error) {
		switch key {
		case "alice@example.org":
			return "alice@example.org", nil
		case "broken@example.org":
			return "", errors.New("open /var/lib/mailroom/mailroom.db: input/output error")
		case "bad@example.org":
			return "two\nlines", nil
		}
		return "", socketmap.ErrNotFound
	}),
	"domain": socketmap.TableFunc(func(ctx context.Context, key string) (string, error) {
		if key == "example.org" {
			return key, nil
		}
		return "", socketmap.ErrNotFound
	}),
}

func start(t *testing.T, network string) (*socketmap.Server, string) {
	t.Helper()
	srv := socketmap.New(socketmap.Options{Tables: tables, IdleTimeout: 5 * time.Second, Panics: mailtest.Panics})
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(mailtest.ShortTempDir(t), "map.sock")
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, socketmap.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return srv, l.Addr().String()
}

// TestMain fails the run on any panic the servers of these tests recovered.
func TestMain(m *testing.M) { mailtest.Main(m) }

// TestPanicIsRecorded: a table that panics ends that connection, and the
// panic is counted with its stack; the server goes on.
func TestPanicIsRecorded(t *testing.T) {
	rec := new(panics.Recorder)
	srv := socketmap.New(socketmap.Options{Panics: rec, Tables: map[string]socketmap.Table{
		"bug": socketmap.TableFunc(func(ctx context.Context, key string) (string, error) { panic("table bug") }),
		"ok":  tables["domain"],
	}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, netstring("bug x"))
	if b, err := io.ReadAll(c); len(b) != 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("after a panic: read %q, %v; want the connection closed", b, err)
	}
	if rec.Count() != 1 || !strings.Contains(strings.Join(rec.First(), ""), "table bug") {
		t.Errorf("panics recorded: %d %q, want the one", rec.Count(), rec.First())
	}
	c2, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fmt.Fprint(c2, netstring("ok example.org"))
	if got := readReply(t, bufio.NewReader(c2)); got != "OK example.org" {
		t.Errorf("after a panic: %q", got)
	}
}

func netstring(s string) string { return strconv.Itoa(len(s)) + ":" + s + "," }

// readReply reads one netstring reply.
func readReply(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	n, err := r.ReadString(':')
	if err != nil {
		t.Fatalf("read reply length: %v", err)
	}
	size, err := strconv.Atoi(strings.TrimSuffix(n, ":"))
	if err != nil {
		t.Fatalf("reply length %q: %v", n, err)
	}
	buf := make([]byte, size+1)
	if _, err := io.ReadFull(r, buf); err != nil || buf[size] != ',' {
		t.Fatalf("read reply of %d bytes: %q %v", size, buf, err)
	}
	return string(buf[:size])
}

// TestLookups sends requests one after another on one connection, as
// Postfix does, and checks each reply (socketmap_table(5) REPLY FORMAT).
func TestLookups(t *testing.T) {
	_, addr := start(t, "tcp")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for _, tc := range []struct{ req, want string }{
		{"mailbox alice@example.org", "OK alice@example.org"},
		{"mailbox nobody@example.org", "NOTFOUND "},
		{"domain example.org", "OK example.org"},
		{"domain example.net", "NOTFOUND "},
		{"nosuchmap x", "PERM no such map: nosuchmap"},
		{"mailbox", "PERM request is not \"name key\""},
		{"mailbox bad@example.org", "PERM value cannot be sent"},
	} {
		fmt.Fprint(c, netstring(tc.req))
		if got := readReply(t, r); got != tc.want {
			t.Errorf("%q: reply %q, want %q", tc.req, got, tc.want)
		}
	}
	// A failure of ours is TEMP, and its text (a file name) stays ours.
	fmt.Fprint(c, netstring("mailbox broken@example.org"))
	got := readReply(t, r)
	if !strings.HasPrefix(got, "TEMP ") || strings.Contains(got, "mailroom.db") {
		t.Errorf("failed lookup: reply %q, want TEMP without the error's text", got)
	}
}

// TestMalformed checks that a request that is not a netstring, or is too
// long, ends the connection without a reply (there is no way to find the
// next request), and that the server goes on serving others.
func TestMalformed(t *testing.T) {
	_, addr := start(t, "tcp")
	for _, req := range []string{
		"x:mailbox a,",
		"05:abcde,",
		"5:abcdef",
		"99999999:",
		"5000:" + strings.Repeat("x", 5000) + ",",
		":,",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprint(c, req)
		b, err := io.ReadAll(c)
		if errors.Is(err, syscall.ECONNRESET) {
			err = nil // closed with the rest of the request unread
		}
		if err != nil || len(b) != 0 {
			t.Errorf("%.20q: got %q, %v; want the connection closed without a reply", req, b, err)
		}
		c.Close()
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, netstring("mailbox alice@example.org"))
	if got := readReply(t, bufio.NewReader(c)); got != "OK alice@example.org" {
		t.Errorf("after malformed requests: %q", got)
	}
}

// TestShutdownClosesIdle checks that Shutdown returns at once with a
// client connected between requests: Postfix keeps its connection open.
func TestShutdownClosesIdle(t *testing.T) {
	srv := socketmap.New(socketmap.Options{Tables: tables})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, netstring("domain example.org"))
	r := bufio.NewReader(c)
	readReply(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an idle client: %v", err)
	}
	if err := <-done; !errors.Is(err, socketmap.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("idle connection after Shutdown: read %v, want EOF", err)
	}
}

// TestPostmap asks through Postfix's own socketmap client (postmap -q), on
// a unix socket as Postfix's daemons would: Postfix is the peer that
// judges the protocol.
func TestPostmap(t *testing.T) {
	postmap := mailtest.NeedTool(t, "postmap")
	_, sock := start(t, "unix")
	etc := t.TempDir()
	// postmap reads main.cf; an empty one gives Postfix's defaults.
	if err := os.WriteFile(filepath.Join(etc, "main.cf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		table, key string
		exit       int
		out        string
	}{
		{"mailbox", "alice@example.org", 0, "alice@example.org\n"},
		{"mailbox", "nobody@example.org", 1, ""},
		{"domain", "example.org", 0, "example.org\n"},
		{"domain", "example.net", 1, ""},
	} {
		cmd := exec.Command(postmap, "-c", etc, "-q", tc.key, "socketmap:unix:"+sock+":"+tc.table)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.exit || stdout.String() != tc.out {
			t.Errorf("postmap -q %s %s: exit %d, %q (stderr %q); want exit %d, %q", tc.key, tc.table, code, stdout.String(), stderr.String(), tc.exit, tc.out)
		}
	}
	// A failed lookup is temporary for Postfix too: a query error, not
	// "not found" (postmap exits 1 for both, so its words tell them apart).
	cmd := exec.Command(postmap, "-c", etc, "-q", "broken@example.org", "socketmap:unix:"+sock+":mailbox")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "socketmap server temporary error") || !strings.Contains(string(out), "query error") {
		t.Errorf("postmap -q on a failing lookup: %v\n%s\nwant a temporary error, not NOTFOUND", err, out)
	}
}
