package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// runSend is the load generator for submission (bench/smtp.sh AUTH=1),
// which smtp-source cannot be: it does not authenticate. Like
// `smtp-source -d -s S -m M -r R -l SIZE` it sends M messages over S
// sessions (one connection each, every message a new transaction), each
// to R recipients (user@, 1user@, ... (R-1)user@ of the domain, accounts
// of the benchmark), with a header that a DKIM signer signs (From: in the
// signing domain, To, Subject, Date, Message-ID, MIME) and a body of
// SIZE octets. With -auth user:password it authenticates (AUTH PLAIN)
// once per session; without, it does not (Postfix signing for its
// InternalHosts). With -message FILE every message is that file, byte for
// byte (-l is then unused): a DKIM-signed message from "smtpbench signed".
func runSend(args []string) error {
	fs := flag.NewFlagSet("send", flag.ExitOnError)
	sessions := fs.Int("s", 1, "sessions (connections) in parallel")
	messages := fs.Int("m", 1, "messages in all")
	rcpts := fs.Int("r", 1, "recipients per message")
	size := fs.Int("l", 4096, "body size in octets")
	from := fs.String("f", "bench@example.org", "envelope sender and From: address")
	to := fs.String("t", "user@example.org", "first recipient; the others are 1user@, 2user@, ...")
	helo := fs.String("helo", "client.bench.test", "HELO name")
	auth := fs.String("auth", "", "user:password for AUTH PLAIN (none if empty)")
	message := fs.String("message", "", "file whose content is every message (instead of a generated one)")
	fs.Parse(args)
	if fs.NArg() != 1 || *sessions < 1 || *messages < 1 || *rcpts < 1 {
		return errors.New("send: [flags] HOST:PORT, with -s, -m and -r at least 1")
	}
	addr := fs.Arg(0)
	local, domain, ok := strings.Cut(*to, "@")
	if !ok {
		return fmt.Errorf("send: -t %q is not an address", *to)
	}
	var rcptList []string
	for i := range *rcpts {
		if i == 0 {
			rcptList = append(rcptList, *to)
		} else {
			rcptList = append(rcptList, strconv.Itoa(i)+local+"@"+domain)
		}
	}
	body := strings.Repeat(strings.Repeat("x", 70)+"\r\n", *size/72+1)[:*size]
	fixed := ""
	if *message != "" {
		b, err := os.ReadFile(*message)
		if err != nil {
			return fmt.Errorf("send: %w", err)
		}
		fixed = string(b)
	}
	var next sync.Mutex
	left := *messages
	take := func() bool {
		next.Lock()
		defer next.Unlock()
		left--
		return left >= 0
	}
	errs := make(chan error, *sessions)
	var wg sync.WaitGroup
	for s := range *sessions {
		wg.Go(func() { errs <- session(addr, *helo, *auth, *from, rcptList, body, fixed, s, take) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// session is one connection that sends messages while take says so:
// fixed, or if that is empty, a message made of body.
func session(addr, helo, auth, from string, rcpts []string, body, fixed string, id int, take func() bool) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return fmt.Errorf("session %d: %w", id, err)
	}
	defer c.Close()
	if err := c.Hello(helo); err != nil {
		return fmt.Errorf("session %d: EHLO: %w", id, err)
	}
	if auth != "" {
		user, pass, _ := strings.Cut(auth, ":")
		if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
			return fmt.Errorf("session %d: AUTH: %w", id, err)
		}
	}
	for n := 0; take(); n++ {
		msg := fixed
		if msg == "" {
			msg = fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: bench %d.%d\r\nDate: %s\r\nMessage-ID: <%d.%d.%d@bench.test>\r\n"+
				"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n%s",
				from, rcpts[0], id, n, time.Now().Format(time.RFC1123Z), time.Now().UnixNano(), id, n, body)
		}
		if err := c.SendMail(from, rcpts, strings.NewReader(msg)); err != nil {
			return fmt.Errorf("session %d, message %d: %w", id, n, err)
		}
	}
	return c.Quit()
}
