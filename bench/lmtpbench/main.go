// Command lmtpbench is the load generator behind bench/lmtp.sh. It is a
// benchmark tool, run by hand; no test runs it.
//
//	lmtpbench lmtp -addr 127.0.0.1:PORT -n 2000 -sessions 16 -users 16
//	lmtpbench disk -dir DIR -n 2000 -workers 16 -maildirs 16
//	lmtpbench count -dir MAILROOT -domain example.org
//	lmtpbench fill -dir MAILDIR -n 100000 -sub cur
//	lmtpbench idle -addr 127.0.0.1:PORT -user U -pass P
//	lmtpbench port
//	lmtpbench wait -addr 127.0.0.1:PORT
//
// "lmtp" opens -sessions LMTP connections at once; each delivers its share
// of -n messages of -size bytes sequentially (MAIL, one RCPT, DATA, the
// per-recipient reply) to user<i mod users>@domain, so that every server
// under test gets the very same client. "disk" measures what the disk
// allows for the same durability, with no server in the way: per message,
// create a file O_EXCL in tmp/, write -size bytes, fsync it, rename it into
// new/, fsync new/. "count" counts the files in new/ and tmp/ of every
// Maildir below MAILROOT/<domain>/*/Maildir, for the script to check that
// the server really stored what it acknowledged. "fill" puts -n messages
// into one Maildir's new/ or cur/ (Dovecot's file names with S= and W=, as
// both servers write them; not fsynced one by one, the file system is
// synced once at the end), for a delivery into a folder that already
// holds many messages. "idle" logs in over IMAP (plain LOGIN, loopback),
// selects INBOX and IDLEs until stdin closes, then prints how many EXISTS
// updates it got: a client watching the folder while mail arrives. "port" prints a free
// loopback port (bound to 127.0.0.1:0, then released) for a server that
// must be told its port; "wait" waits until a server answers a connection
// with a 220 greeting.
//
// Each mode prints one line "RESULT key=value ...", which the script parses.
package main

import (
	"mailroom/bench/internal/benchnet"

	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "lmtp":
		err = runLMTP(os.Args[2:])
	case "disk":
		err = runDisk(os.Args[2:])
	case "count":
		err = runCount(os.Args[2:])
	case "fill":
		err = runFill(os.Args[2:])
	case "idle":
		err = runIdle(os.Args[2:])
	case "port":
		err = runPort()
	case "wait":
		err = runWait(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lmtpbench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: lmtpbench lmtp|disk|count|fill|idle|port|wait [flags]  (-h for flags)")
	os.Exit(2)
}

// message returns an RFC 5322 message of exactly size bytes with CRLF line
// endings: a few headers and a body of 76-character lines.
func message(size int, from, to string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: lmtpbench\r\n"+
		"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <lmtpbench@bench.test>\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", from, to)
	line := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_=+/.,;:!?"), 2)[:76]
	// Lines of up to 76 characters plus CRLF; never leave a remainder too
	// short for a line of its own.
	for room := size - b.Len(); room >= 3; room = size - b.Len() {
		n := room - 2
		if n > len(line) {
			n = len(line)
			if room-(n+2) < 3 {
				n -= 6
			}
		}
		b.Write(line[:n])
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// split returns how many of n items worker i of w gets.
func split(n, w, i int) int {
	q, r := n/w, n%w
	if i < r {
		return q + 1
	}
	return q
}

// stats summarises per-message latencies.
func stats(lat []time.Duration) string {
	if len(lat) == 0 {
		return "p50_ms=0 p99_ms=0"
	}
	slices.Sort(lat)
	p := func(q float64) float64 {
		i := int(q * float64(len(lat)-1))
		return float64(lat[i]) / float64(time.Millisecond)
	}
	return fmt.Sprintf("p50_ms=%.2f p99_ms=%.2f", p(0.50), p(0.99))
}

func runLMTP(args []string) error {
	fs := flag.NewFlagSet("lmtp", flag.ExitOnError)
	addr := fs.String("addr", "", "LMTP server, host:port")
	n := fs.Int("n", 2000, "messages in all")
	sessions := fs.Int("sessions", 1, "concurrent LMTP sessions")
	users := fs.Int("users", 16, "recipients user0..user<users-1>; session i delivers to user<i mod users>")
	domain := fs.String("domain", "example.org", "recipient domain")
	size := fs.Int("size", 4096, "message size in bytes, as sent")
	rcpts := fs.Int("rcpts", 1, "recipients per message: session i sends to user<(i+k) mod users> for k < rcpts")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	fs.Parse(args)
	if *addr == "" || *n < 1 || *sessions < 1 || *users < 1 || *rcpts < 1 || *rcpts > *users {
		return errors.New("lmtp: need -addr, -n >= 1, -sessions >= 1, -users >= 1, 1 <= -rcpts <= -users")
	}
	from := "bench@sender.test"

	// Every session connects and says LHLO before the clock starts, so
	// that connection set-up (and Dovecot's process start) is not timed.
	clients := make([]*smtp.Client, *sessions)
	for i := range clients {
		conn, err := net.DialTimeout("tcp", *addr, 10*time.Second)
		if err != nil {
			return fmt.Errorf("session %d: %w", i, err)
		}
		c := smtp.NewClientLMTP(conn)
		c.CommandTimeout = *timeout
		c.SubmissionTimeout = *timeout
		if err := c.Hello("lmtpbench.test"); err != nil {
			return fmt.Errorf("session %d: LHLO: %w", i, err)
		}
		clients[i] = c
	}

	var (
		wg       sync.WaitGroup
		ok       atomic.Int64
		mu       sync.Mutex
		firstErr error
		lats     = make([][]time.Duration, *sessions)
	)
	start := time.Now()
	deadline := start.Add(*timeout)
	for i, c := range clients {
		var to []string
		for k := range *rcpts {
			to = append(to, fmt.Sprintf("user%d@%s", (i+k)%*users, *domain))
		}
		msg := message(*size, from, to[0])
		count := split(*n, *sessions, i)
		lats[i] = make([]time.Duration, 0, count)
		wg.Go(func() {
			for range count {
				if time.Now().After(deadline) {
					err := errors.New("timeout")
					mu.Lock()
					firstErr = cmp(firstErr, err)
					mu.Unlock()
					return
				}
				t0 := time.Now()
				if err := deliver(c, from, to, msg); err != nil {
					mu.Lock()
					firstErr = cmp(firstErr, fmt.Errorf("session %d to %s: %w", i, to, err))
					mu.Unlock()
					return
				}
				lats[i] = append(lats[i], time.Since(t0))
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	for _, c := range clients {
		c.Quit()
		c.Close()
	}
	if firstErr != nil {
		return fmt.Errorf("%d of %d delivered: %w", ok.Load(), *n, firstErr)
	}
	fmt.Printf("RESULT mode=lmtp sessions=%d users=%d rcpts=%d n=%d secs=%.3f rate=%.1f %s\n",
		*sessions, *users, *rcpts, ok.Load(), secs, float64(ok.Load())/secs, stats(slices.Concat(lats...)))
	return nil
}

func cmp(old, new error) error {
	if old != nil {
		return old
	}
	return new
}

// deliver sends one message to its recipients and waits for their replies.
func deliver(c *smtp.Client, from string, to []string, msg []byte) error {
	if err := c.Mail(from, nil); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return fmt.Errorf("RCPT %s: %w", rcpt, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("DATA write: %w", err)
	}
	resp, err := w.CloseWithLMTPResponse()
	if err != nil {
		return fmt.Errorf("DATA reply: %w", err)
	}
	for _, rcpt := range to {
		if _, ok := resp[rcpt]; !ok {
			return fmt.Errorf("no reply for %s", rcpt)
		}
	}
	return nil
}

func runDisk(args []string) error {
	fs := flag.NewFlagSet("disk", flag.ExitOnError)
	dir := fs.String("dir", "", "directory to create Maildirs in (must not exist yet)")
	n := fs.Int("n", 2000, "files in all")
	workers := fs.Int("workers", 1, "concurrent goroutines")
	maildirs := fs.Int("maildirs", 0, "Maildirs to spread over; worker i uses maildir i mod maildirs (0: one per worker)")
	size := fs.Int("size", 4096, "bytes per file")
	mode := fs.String("mode", "rename", "rename (tmp/ then rename into new/) or tmpfile (O_TMPFILE in new/, then linkat)")
	fs.Parse(args)
	if *dir == "" || *n < 1 || *workers < 1 {
		return errors.New("disk: need -dir, -n >= 1, -workers >= 1")
	}
	put := store
	switch *mode {
	case "rename":
	case "tmpfile":
		put = storeTmpfile
	default:
		return fmt.Errorf("disk: -mode rename or tmpfile, not %q", *mode)
	}
	if *maildirs <= 0 {
		*maildirs = *workers
	}
	if err := os.Mkdir(*dir, 0o700); err != nil {
		return err
	}
	for m := range *maildirs {
		for _, sub := range []string{"tmp", "new", "cur"} {
			if err := os.MkdirAll(filepath.Join(*dir, strconv.Itoa(m), sub), 0o700); err != nil {
				return err
			}
		}
	}
	syncDir(*dir)

	data := message(*size, "bench@sender.test", "user@example.org")
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		lats     = make([][]time.Duration, *workers)
	)
	host, _ := os.Hostname()
	var ru0, ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	start := time.Now()
	for w := range *workers {
		md := filepath.Join(*dir, strconv.Itoa(w%*maildirs))
		count := split(*n, *workers, w)
		wg.Go(func() {
			for j := range count {
				t0 := time.Now()
				name := fmt.Sprintf("%d.W%dQ%d.%s", t0.Unix(), w, j, host)
				if err := put(md, name, data); err != nil {
					mu.Lock()
					firstErr = cmp(firstErr, err)
					mu.Unlock()
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	if firstErr != nil {
		return firstErr
	}
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	fmt.Printf("RESULT mode=disk store=%s workers=%d maildirs=%d n=%d secs=%.3f rate=%.1f cpu_us=%.0f %s\n",
		*mode, *workers, *maildirs, *n, secs, float64(*n)/secs, float64(cpu.Microseconds())/float64(*n), stats(slices.Concat(lats...)))
	return nil
}

// store is one durable Maildir delivery with nothing else around it.
func store(md, name string, data []byte) error {
	tmp, final := filepath.Join(md, "tmp", name), filepath.Join(md, "new", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return syncDir(filepath.Join(md, "new"))
}

// storeTmpfile is store with O_TMPFILE: the file is made nameless in new/,
// written and fsynced, then linked under its name (linkat with
// AT_EMPTY_PATH, which needs CAP_DAC_READ_SEARCH: run as root), and new/
// is fsynced. tmp/ is not touched, and there is no rename.
func storeTmpfile(md, name string, data []byte) error {
	nd, err := unix.Open(filepath.Join(md, "new"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(nd)
	fd, err := unix.Openat(nd, ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("O_TMPFILE: %w", err)
	}
	_, err = unix.Write(fd, data)
	if err == nil {
		err = unix.Fsync(fd)
	}
	if err == nil {
		err = unix.Linkat(fd, "", nd, name, unix.AT_EMPTY_PATH)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Fsync(nd)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func runCount(args []string) error {
	fs := flag.NewFlagSet("count", flag.ExitOnError)
	dir := fs.String("dir", "", "mail root: Maildirs are <dir>/<domain>/*/Maildir")
	domain := fs.String("domain", "example.org", "domain")
	fs.Parse(args)
	if *dir == "" {
		return errors.New("count: need -dir")
	}
	mds, err := filepath.Glob(filepath.Join(*dir, *domain, "*", "Maildir"))
	if err != nil {
		return err
	}
	var nNew, nTmp, nCur int
	for _, md := range mds {
		for sub, p := range map[string]*int{"new": &nNew, "tmp": &nTmp, "cur": &nCur} {
			ents, err := os.ReadDir(filepath.Join(md, sub))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			for _, e := range ents {
				if e.Type().IsRegular() {
					*p++
				}
			}
		}
	}
	fmt.Printf("RESULT mode=count maildirs=%d new=%d cur=%d tmp=%d\n", len(mds), nNew, nCur, nTmp)
	return nil
}

func runFill(args []string) error {
	fs := flag.NewFlagSet("fill", flag.ExitOnError)
	dir := fs.String("dir", "", "the Maildir (made with tmp/, new/ and cur/ if missing)")
	n := fs.Int("n", 10000, "messages to add")
	sub := fs.String("sub", "cur", "new or cur (cur: seen, :2,S)")
	size := fs.Int("size", 2048, "bytes per message")
	fs.Parse(args)
	if *dir == "" || *n < 0 || (*sub != "new" && *sub != "cur") {
		return errors.New("fill: need -dir, -n >= 0, -sub new|cur")
	}
	for _, s := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(*dir, s), 0o700); err != nil {
			return err
		}
	}
	data := bytes.ReplaceAll(message(*size, "fill@sender.test", "user@example.org"), []byte("\r\n"), []byte("\n"))
	served := len(data) + bytes.Count(data, []byte("\n"))
	info := ""
	if *sub == "cur" {
		info = ":2,S"
	}
	// Names as delivered a year ago, one second apart: older than any
	// the servers give, so that sorting by name keeps the fill first.
	t0 := time.Now().Add(-365 * 24 * time.Hour).Unix()
	pid := os.Getpid()
	for i := range *n {
		name := fmt.Sprintf("%d.M%06dP%dQ%d.fill,S=%d,W=%d%s", t0+int64(i), i%1000000, pid, i, len(data), served, info)
		if err := os.WriteFile(filepath.Join(*dir, *sub, name), data, 0o600); err != nil {
			return err
		}
	}
	d, err := os.Open(*dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	fmt.Printf("RESULT mode=fill n=%d sub=%s\n", *n, *sub)
	return nil
}

func runIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	addr := fs.String("addr", "", "IMAP server, host:port")
	user := fs.String("user", "", "login")
	pass := fs.String("pass", "", "password")
	fs.Parse(args)
	if *addr == "" || *user == "" {
		return errors.New("idle: need -addr and -user")
	}
	conn, err := net.DialTimeout("tcp", *addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	// until reads lines up to the one starting with prefix.
	until := func(prefix string) error {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return fmt.Errorf("waiting for %q: %w", prefix, err)
			}
			if strings.HasPrefix(line, prefix) {
				if strings.HasPrefix(line, prefix+"OK") || prefix == "+" || prefix == "* OK" {
					return nil
				}
				return fmt.Errorf("server said %q", strings.TrimSpace(line))
			}
		}
	}
	if err := until("* OK"); err != nil {
		return err
	}
	fmt.Fprintf(conn, "a LOGIN %q %q\r\n", *user, *pass)
	if err := until("a "); err != nil {
		return err
	}
	fmt.Fprintf(conn, "b SELECT INBOX\r\n")
	if err := until("b "); err != nil {
		return err
	}
	fmt.Fprintf(conn, "c IDLE\r\n")
	if err := until("+"); err != nil {
		return err
	}
	fmt.Println("idling") // the script waits for this line
	var exists atomic.Int64
	go func() {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "* ") && strings.HasSuffix(strings.TrimSpace(line), " EXISTS") {
				exists.Add(1)
			}
		}
	}()
	io.Copy(io.Discard, os.Stdin)
	fmt.Fprintf(conn, "DONE\r\n")
	fmt.Printf("RESULT mode=idle exists=%d\n", exists.Load())
	return nil
}

func runPort() error {
	port, err := benchnet.FreePort()
	if err != nil {
		return err
	}
	fmt.Println(port)
	return nil
}

func runWait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	addr := fs.String("addr", "", "server, host:port")
	timeout := fs.Duration("timeout", 15*time.Second, "give up after this long")
	fs.Parse(args)
	return benchnet.Wait(*addr, *timeout, greet)
}

// greet connects, reads the greeting and says goodbye.
func greet(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("lmtpbench.test"); err != nil {
		return err
	}
	return c.Quit()
}
