// Command imapbench is the client and generator behind bench/imap.sh and
// bench/imapconns.sh. It is a benchmark tool, run by hand; no test runs it.
//
//	imapbench gen -dir MAILDIR -n 10000 [-seed 1]
//	imapbench op -addr 127.0.0.1:PORT -user U -pass P -op OP
//	imapbench idle -addr 127.0.0.1:PORT -user U -pass P -n 1000 -state selected [-sources K]
//	imapbench mem -pid PID [-tree]
//	imapbench port
//	imapbench wait -addr 127.0.0.1:PORT
//
// "gen" writes a Maildir of n realistic messages into cur/ (gen.go says
// what they look like); the same seed and n give the same files. "op"
// connects, logs in, selects INBOX and times one operation with go-imap's
// client, so that every server gets the very same client: select (the
// clock runs from the TCP connect to the end of SELECT), flags (UID FETCH
// 1:* (FLAGS)), envelope (FETCH 1:* (ENVELOPE)), search-subject (SEARCH
// HEADER Subject <word>), search-body (SEARCH BODY <word>). "idle" opens n
// connections (greeted only, logged in, or logged in with INBOX selected),
// from K local addresses (127.0.0.2 and on) with -sources, prints its
// RESULT line and holds them until SIGTERM or SIGINT.
// "mem" sums the resident (VmRSS) and proportional (Pss) memory of a
// process, with -tree of it and all its descendants (Dovecot's master and
// its services). "port" prints a free loopback port; "wait" waits until an
// IMAP server greets.
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
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = runGen(os.Args[2:])
	case "op":
		err = runOp(os.Args[2:])
	case "idle":
		err = runIdle(os.Args[2:])
	case "mem":
		err = runMem(os.Args[2:])
	case "port":
		err = runPort()
	case "wait":
		err = runWait(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "imapbench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: imapbench gen|op|idle|mem|port|wait [flags]  (-h for flags)")
	os.Exit(2)
}

// dial connects and waits for the greeting.
func dial(addr string) (*imapclient.Client, error) { return dialFrom(addr, nil) }

// dialFrom is dial from a chosen local address (nil: the system's choice).
func dialFrom(addr string, src net.IP) (*imapclient.Client, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := imapclient.New(conn, nil)
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	return c, nil
}

// login dials, logs in and, with sel, selects INBOX; it returns the
// number of messages SELECT reported.
func login(addr, user, pass string, sel bool) (*imapclient.Client, uint32, error) {
	return loginFrom(addr, nil, user, pass, sel, nil)
}

// phases are the times at which a login reached each of its steps.
type phases struct{ greeted, loggedIn, selected time.Time }

// loginFrom is login from a chosen local address; ph, if not nil, gets
// the time of each step.
func loginFrom(addr string, src net.IP, user, pass string, sel bool, ph *phases) (*imapclient.Client, uint32, error) {
	if ph == nil {
		ph = new(phases)
	}
	c, err := dialFrom(addr, src)
	if err != nil {
		return nil, 0, err
	}
	ph.greeted = time.Now()
	if err := c.Login(user, pass).Wait(); err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("LOGIN: %w", err)
	}
	ph.loggedIn = time.Now()
	if !sel {
		return c, 0, nil
	}
	d, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("SELECT INBOX: %w", err)
	}
	ph.selected = time.Now()
	return c, d.NumMessages, nil
}

func runOp(args []string) error {
	fs := flag.NewFlagSet("op", flag.ExitOnError)
	addr := fs.String("addr", "", "IMAP server, host:port")
	user := fs.String("user", "alice@example.org", "user name")
	pass := fs.String("pass", "benchpassword", "password")
	op := fs.String("op", "", "select, flags, envelope, search-subject or search-body")
	fs.Parse(args)
	if *addr == "" {
		return errors.New("op: need -addr")
	}
	if *op == "select" {
		// Timed as a whole (ms) and by part: connect and greeting, LOGIN,
		// SELECT; a server may overlap them (mailroom reads INBOX while
		// it checks the password), so the parts are for reading, not
		// for comparing alone.
		start := time.Now()
		var ph phases
		c, n, err := loginFrom(*addr, nil, *user, *pass, true, &ph)
		if err != nil {
			return err
		}
		c.Logout().Wait()
		c.Close()
		fmt.Printf("RESULT ms=%.1f n=%d connect=%.1f login=%.1f select=%.1f\n", ms(ph.selected.Sub(start)), n,
			ms(ph.greeted.Sub(start)), ms(ph.loggedIn.Sub(ph.greeted)), ms(ph.selected.Sub(ph.loggedIn)))
		return nil
	}
	c, _, err := login(*addr, *user, *pass, true)
	if err != nil {
		return err
	}
	defer c.Close()
	var n int
	start := time.Now()
	switch *op {
	case "flags":
		n, err = fetchAll(c.Fetch(goimap.UIDSet{goimap.UIDRange{Start: 1, Stop: 0}}, &goimap.FetchOptions{Flags: true, UID: true}))
	case "envelope":
		n, err = fetchAll(c.Fetch(goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}}, &goimap.FetchOptions{Envelope: true}))
	case "search-subject":
		n, err = search(c, &goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "Subject", Value: SubjectWord}}})
	case "search-body":
		n, err = search(c, &goimap.SearchCriteria{Body: []string{BodyWord}})
	default:
		return fmt.Errorf("op: unknown -op %q", *op)
	}
	el := time.Since(start)
	if err != nil {
		return fmt.Errorf("%s: %w", *op, err)
	}
	c.Logout().Wait()
	fmt.Printf("RESULT ms=%.1f n=%d\n", ms(el), n)
	return nil
}

// fetchAll reads every FETCH response of cmd, checking that each has the
// FLAGS or ENVELOPE asked for, and counts them.
func fetchAll(cmd *imapclient.FetchCommand) (int, error) {
	n := 0
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		found := false
		for {
			item := msg.Next()
			if item == nil {
				break
			}
			switch it := item.(type) {
			case imapclient.FetchItemDataFlags:
				found = true
			case imapclient.FetchItemDataEnvelope:
				found = it.Envelope != nil
			}
		}
		if !found {
			cmd.Close()
			return n, fmt.Errorf("message %d: a FETCH response without FLAGS or ENVELOPE", msg.SeqNum)
		}
		n++
	}
	return n, cmd.Close()
}

func search(c *imapclient.Client, crit *goimap.SearchCriteria) (int, error) {
	d, err := c.Search(crit, nil).Wait()
	if err != nil {
		return 0, err
	}
	return len(d.AllSeqNums()), nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func runIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	addr := fs.String("addr", "", "IMAP server, host:port")
	user := fs.String("user", "alice@example.org", "user name")
	pass := fs.String("pass", "benchpassword", "password")
	n := fs.Int("n", 1000, "connections")
	state := fs.String("state", "selected", "greeted (not logged in), auth (logged in) or selected (INBOX selected)")
	parallel := fs.Int("parallel", 16, "connections being set up at once")
	sources := fs.Int("sources", 0, "spread the connections over this many local addresses, 127.0.0.2 and on (0: the system's choice), as many clients behind as many addresses")
	fs.Parse(args)
	if *addr == "" || *n < 1 || *parallel < 1 || *sources < 0 || *sources > 250 {
		return errors.New("idle: need -addr, -n >= 1, -parallel >= 1, 0 <= -sources <= 250")
	}
	src := func(i int) net.IP {
		if *sources == 0 {
			return nil
		}
		return net.IPv4(127, 0, 0, byte(2+i%*sources))
	}
	if *state != "greeted" && *state != "auth" && *state != "selected" {
		return fmt.Errorf("idle: unknown -state %q", *state)
	}
	clients := make([]*imapclient.Client, *n)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	next := make(chan int)
	for range *parallel {
		wg.Go(func() {
			for i := range next {
				var c *imapclient.Client
				var err error
				if *state == "greeted" {
					c, err = dialFrom(*addr, src(i))
				} else {
					c, _, err = loginFrom(*addr, src(i), *user, *pass, *state == "selected", nil)
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("connection %d: %w", i, err)
				}
				clients[i] = c
				mu.Unlock()
			}
		})
	}
	for i := range *n {
		next <- i
	}
	close(next)
	wg.Wait()
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	if firstErr != nil {
		return firstErr
	}
	fmt.Printf("RESULT ready=%d state=%s\n", *n, *state)
	os.Stdout.Sync()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	// Every connection must still be there: a server that dropped idle
	// connections would look cheap.
	for i, c := range clients {
		select {
		case <-c.Closed():
			return fmt.Errorf("idle: the server closed connection %d while it was idle", i)
		default:
		}
	}
	return nil
}

func runMem(args []string) error {
	fs := flag.NewFlagSet("mem", flag.ExitOnError)
	pid := fs.Int("pid", 0, "process")
	tree := fs.Bool("tree", false, "add every descendant of the process")
	fs.Parse(args)
	if *pid <= 0 {
		return errors.New("mem: need -pid")
	}
	pids := []int{*pid}
	if *tree {
		children := map[int][]int{}
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return err
		}
		for _, e := range ents {
			p, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if pp, err := ppid(p); err == nil {
				children[pp] = append(children[pp], p)
			}
		}
		for i := 0; i < len(pids); i++ {
			pids = append(pids, children[pids[i]]...)
		}
	}
	var rss, pss int64
	procs := 0
	for _, p := range pids {
		r, err := procKB(fmt.Sprintf("/proc/%d/status", p), "VmRSS:")
		if err != nil {
			if p == *pid {
				return err
			}
			continue // gone meanwhile
		}
		s, _ := procKB(fmt.Sprintf("/proc/%d/smaps_rollup", p), "Pss:")
		rss += r
		pss += s
		procs++
	}
	fmt.Printf("RESULT rss_kb=%d pss_kb=%d procs=%d\n", rss, pss, procs)
	return nil
}

// ppid reads the parent of p from /proc/p/stat (after the command name,
// which may hold spaces, in parentheses).
func ppid(p int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, fmt.Errorf("/proc/%d/stat: too short", p)
	}
	return strconv.Atoi(f[1])
}

// procKB returns the value in kB of the line starting with key.
func procKB(path, key string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, key)
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
	return benchnet.Wait(*addr, *timeout, func(addr string) error {
		c, err := dial(addr)
		if err != nil {
			return err
		}
		c.Logout().Wait()
		return c.Close()
	})
}
