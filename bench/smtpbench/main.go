// Command smtpbench is the timing helper behind bench/smtp.sh. It is a
// benchmark tool, run by hand; no test runs it.
//
//	smtpbench run -dir MAILROOT -domain example.org -expect 10000 -- smtp-source ARGS...
//	smtpbench count -dir MAILROOT -domain example.org
//	smtpbench port
//	smtpbench wait -addr 127.0.0.1:PORT
//	smtpbench dns -zone FILE
//	smtpbench send -s S -m M -r R -l SIZE -f FROM -t TO [-auth USER:PASS] [-message FILE] HOST:PORT
//	smtpbench signed -from FROM -l SIZE -out FILE -zone ZONEFILE
//
// "run" starts the clock, runs the load generator given after "--" (Postfix's
// smtp-source) and waits for it to exit: that is the accept time, when the
// server under test has answered 250 to every message. It then polls the
// Maildirs below MAILROOT/<domain>/*/Maildir until new/ holds -expect files
// in all: that is the end-to-end time, when every copy is in its mailbox
// (for a server that delivers before it answers, as mailroom does, the two
// are the same; for Postfix in front of Dovecot, the second includes
// draining Postfix's queue through LMTP). Polling starts only once the
// generator has exited, every -poll, so that it takes no CPU from the run
// while messages are still being sent; the end-to-end time is therefore
// known to within -poll.
//
// "count" counts the files in new/, cur/ and tmp/ of those Maildirs.
// "port" prints a free loopback port (bound to 127.0.0.1:0, then released)
// for a server that must be told its port; "wait" waits until a server
// answers a connection with a 220 greeting. "dns" serves a zone on
// loopback for the MX's checks (dns.go). "send" is a load generator like
// smtp-source that can authenticate, for submission (send.go), or send one
// DKIM-signed message that "signed" wrote (signed.go), for the MX's checks.
//
// Each mode prints one line "RESULT key=value ...", which the script parses.
package main

import (
	"mailroom/bench/internal/benchnet"

	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runRun(os.Args[2:])
	case "count":
		err = runCount(os.Args[2:])
	case "port":
		err = runPort()
	case "wait":
		err = runWait(os.Args[2:])
	case "dns":
		err = runDNS(os.Args[2:])
	case "send":
		err = runSend(os.Args[2:])
	case "signed":
		err = runSigned(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "smtpbench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: smtpbench run|count|port|wait|dns|send|signed [flags]  (-h for flags)")
	os.Exit(2)
}

func runRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	dir := fs.String("dir", "", "mail root: Maildirs are <dir>/<domain>/*/Maildir")
	domain := fs.String("domain", "example.org", "domain")
	expect := fs.Int("expect", 0, "files expected in new/ in all (messages times recipients)")
	messages := fs.Int("messages", 0, "messages sent (for the rates; default -expect)")
	poll := fs.Duration("poll", 20*time.Millisecond, "how often to count files once the generator has exited")
	timeout := fs.Duration("timeout", 3*time.Minute, "give up after this long")
	fs.Parse(args)
	cmdArgs := fs.Args()
	if *dir == "" || *expect < 1 || len(cmdArgs) == 0 {
		return errors.New("run: need -dir, -expect >= 1 and a command after --")
	}
	if *messages == 0 {
		*messages = *expect
	}

	cmd := exec.Command(cmdArgs[0], cmdArgs[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s: %w", cmdArgs[0], err)
		}
	case <-time.After(*timeout):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s still running after %v", cmdArgs[0], *timeout)
	}
	accept := time.Since(start)

	var c counts
	for {
		var err error
		c, err = count(*dir, *domain)
		if err != nil {
			return err
		}
		if c.new >= *expect {
			break
		}
		if time.Since(start) > *timeout {
			return fmt.Errorf("after %v only %d of %d messages are in new/ (%d in tmp/)", *timeout, c.new, *expect, c.tmp)
		}
		time.Sleep(*poll)
	}
	e2e := time.Since(start)
	if c.new != *expect {
		return fmt.Errorf("%d messages in new/, expected %d", c.new, *expect)
	}
	fmt.Printf("RESULT mode=run messages=%d files=%d accept_secs=%.3f accept_rate=%.1f e2e_secs=%.3f rate=%.1f tmp=%d\n",
		*messages, c.new, accept.Seconds(), float64(*messages)/accept.Seconds(),
		e2e.Seconds(), float64(*messages)/e2e.Seconds(), c.tmp)
	return nil
}

type counts struct{ maildirs, new, cur, tmp int }

func count(dir, domain string) (counts, error) {
	var c counts
	mds, err := filepath.Glob(filepath.Join(dir, domain, "*", "Maildir"))
	if err != nil {
		return c, err
	}
	c.maildirs = len(mds)
	for _, md := range mds {
		for sub, p := range map[string]*int{"new": &c.new, "tmp": &c.tmp, "cur": &c.cur} {
			n, err := names(filepath.Join(md, sub))
			if err != nil {
				return c, err
			}
			*p += n
		}
	}
	return c, nil
}

// names counts the entries of dir other than . and .. (a Maildir's
// subdirectories hold only message files); a missing dir holds none.
func names(dir string) (int, error) {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	for {
		ns, err := f.Readdirnames(4096)
		n += len(ns)
		if err != nil {
			break
		}
	}
	return n, nil
}

func runCount(args []string) error {
	fs := flag.NewFlagSet("count", flag.ExitOnError)
	dir := fs.String("dir", "", "mail root: Maildirs are <dir>/<domain>/*/Maildir")
	domain := fs.String("domain", "example.org", "domain")
	fs.Parse(args)
	if *dir == "" {
		return errors.New("count: need -dir")
	}
	c, err := count(*dir, *domain)
	if err != nil {
		return err
	}
	fmt.Printf("RESULT mode=count maildirs=%d new=%d cur=%d tmp=%d\n", c.maildirs, c.new, c.cur, c.tmp)
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

// greet connects, reads a 220 greeting (possibly multi-line) and says QUIT.
func greet(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "220") {
			return fmt.Errorf("greeting: %q", strings.TrimSpace(line))
		}
		if len(line) < 4 || line[3] != '-' {
			break
		}
	}
	fmt.Fprintf(conn, "QUIT\r\n")
	br.ReadString('\n')
	return nil
}
