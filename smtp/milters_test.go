package smtp_test

import (
	"bytes"
	"encoding/base64"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/fakedns"
	"mailroom/internal/mailtest/fakemilter"
	"mailroom/internal/mailtest/mailenv"
	"mailroom/internal/resolve"
	"mailroom/smtp"
)

// TestMXCarriesOutMilterReplies: what a milter decides at each stage
// reaches the client and the mailboxes as it should: a refusal at RCPT or
// at the end, a discard (250, nothing delivered), quarantine (the Junk
// folder), recipients added and removed, another sender, another body,
// header changes; a recipient a milter adds outside the local domains is
// never relayed by the MX; and a recipient accepted at RCPT that can no
// longer be delivered to fails the transaction rather than vanishing
// after a 250.
func TestMXCarriesOutMilterReplies(t *testing.T) {
	type rcpt struct{ addr, reply string }
	alice, bob := rcpt{"alice@example.org", "250"}, rcpt{"bob@example.org", "250"}
	cases := []struct {
		name   string
		answer func(env *mailenv.Env) func(byte, []byte) ([][]byte, string)
		rcpts  []rcpt
		msg    []string // nil: the usual message
		data   string   // the reply to the message
		// Messages in each mailbox afterwards ("alice", "alice/.Junk",
		// "bob"), and what each must contain.
		want     map[string]int
		contains map[string][]string
		absent   map[string][]string
	}{
		{name: "continue: delivered as it came", rcpts: []rcpt{alice},
			answer: func(*mailenv.Env) func(byte, []byte) ([][]byte, string) { return nil },
			data:   "250 ", want: map[string]int{"alice": 1}, contains: map[string][]string{"alice": {"Subject: filtered\n\nbody line\n"}}},
		{name: "discard: 250, nothing delivered", rcpts: []rcpt{alice, bob},
			answer: func(*mailenv.Env) func(byte, []byte) ([][]byte, string) { return atEnd(fakemilter.Packet('d')) },
			data:   "250 ", want: map[string]int{}},
		{name: "quarantine: into Junk", rcpts: []rcpt{alice},
			answer: func(*mailenv.Env) func(byte, []byte) ([][]byte, string) {
				return atEnd(mod('q', "looks like spam\x00"), cont)
			},
			data: "250 ", want: map[string]int{"alice/.Junk": 1}},
		{name: "recipient added", rcpts: []rcpt{alice},
			answer: func(*mailenv.Env) func(byte, []byte) ([][]byte, string) {
				return atEnd(mod('+', "<bob@example.org>\x00"), cont)
			},
			data: "250 ", want: map[string]int{"alice": 1, "bob": 1}},
		{name: "recipient removed", rcpts: []rcpt{alice, bob},
			answer: func(*mailenv.Env) func(byte, []byte) ([][]byte, string) {
				return atEnd(mod('-', "<bob@example.org>\x00"), cont)
			},
			data: "250 ", want: map[string]int{"alice": 1}},
		{name: "every recipient removed: nothing to deliver", rcpts: []rcpt{alice},
			answer: func(*mailenv.Env) func(byte, []byte) ([][]byte, string) {
				return atEnd(mod('-', "<alice@example.org>\x00"), cont)
			},
			data: "250 ", want: map[string]int{}},
		{name: "remote recipient added: the MX does not relay", rcpts: []rcpt{alice},
			answer: func(*mailenv.Env) func(byte, []byte) ([][]byte, string) {
				return atEnd(mod('+', "<victim@elsewhere.example>\x00"), cont)
			},
			data: "250 ", want: map[string]int{"alice": 1}},
		{name: "recipients replaced by a remote one: nothing relayed", rcpts: []rcpt{alice},
			answer: func(*mailenv.Env) func(byte, []byte) ([][]byte, string) {
				return atEnd(mod('-', "<alice@example.org>\x00"), mod('+', "<victim@elsewhere.example>\x00"), cont)
			},
			data: "250 ", want: map[string]int{}},
		{name: "sender changed", rcpts: []rcpt{alice},
			answer: func(*mailenv.Env) func(byte, []byte) ([][]byte, string) {
				return atEnd(mod('e', "<new@remote.example>\x00"), cont)
			},
			data: "250 ", want: map[string]int{"alice": 1}, contains: map[string][]string{"alice": {"Return-Path: <new@remote.example>\n"}}},
		{name: "body replaced", rcpts: []rcpt{alice},
			answer: func(*mailenv.Env) func(byte, []byte) ([][]byte, string) {
				return atEnd(mod('b', "replaced\r\n"), mod('b', "by the milter\r\n"), cont)
			},
			data: "250 ", want: map[string]int{"alice": 1},
			contains: map[string][]string{"alice": {"Subject: filtered\n\nreplaced\nby the milter\n"}}, absent: map[string][]string{"alice": {"body line"}}},
		{name: "header changed", rcpts: []rcpt{alice},
			answer: func(*mailenv.Env) func(byte, []byte) ([][]byte, string) {
				return atEnd(mod('h', "X-Filter\x00yes\x00"), mod('m', "\x00\x00\x00\x01Subject\x00\x00"), cont)
			},
			data: "250 ", want: map[string]int{"alice": 1},
			contains: map[string][]string{"alice": {"X-Filter: yes\n"}}, absent: map[string][]string{"alice": {"Subject:"}}},
		{name: "recipient refused at RCPT", rcpts: []rcpt{alice, {"bob@example.org", "550 5.7.1"}},
			answer: func(*mailenv.Env) func(byte, []byte) ([][]byte, string) {
				return func(code byte, data []byte) ([][]byte, string) {
					if code == 'R' && bytes.Contains(data, []byte("bob@")) {
						return [][]byte{fakemilter.Packet('r')}, ""
					}
					return nil, ""
				}
			},
			data: "250 ", want: map[string]int{"alice": 1}},
		{name: "refused at the end with the milter's text", rcpts: []rcpt{alice},
			answer: func(*mailenv.Env) func(byte, []byte) ([][]byte, string) {
				return atEnd(fakemilter.Packet('y', "554 5.7.1 Spam message rejected\x00"))
			},
			data: "554 5.7.1 Spam message rejected", want: map[string]int{}},
		{name: "tempfail at the end", rcpts: []rcpt{alice},
			answer: func(*mailenv.Env) func(byte, []byte) ([][]byte, string) { return atEnd(fakemilter.Packet('t')) },
			data:   "451 4.7.1", want: map[string]int{}},
		{name: "a recipient accepted at RCPT is gone at the end: 451, nothing delivered", rcpts: []rcpt{alice, bob},
			answer: func(env *mailenv.Env) func(byte, []byte) ([][]byte, string) {
				return func(code byte, _ []byte) ([][]byte, string) {
					if code != 'E' {
						return nil, ""
					}
					if err := env.Accounts.Delete("bob@example.org"); err != nil {
						t.Error(err)
					}
					return [][]byte{mod('e', "<new@remote.example>\x00"), cont}, ""
				}
			},
			data: "451 4.3.0", want: map[string]int{}},
		{name: "a line that is not a field in the header: 550 5.6.0", rcpts: []rcpt{alice},
			msg:    []string{"From: <s@remote.example>", "Subject: filtered", "no colon here", "From: <ceo@example.org>", "", "body line"},
			answer: func(*mailenv.Env) func(byte, []byte) ([][]byte, string) { return nil },
			data:   "550 5.6.0", want: map[string]int{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := newEnv(t)
			m := fakemilter.Start(t, c.answer(env))
			q := &fakeQueue{}
			addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.MX, Queue: q,
				Auth: smtp.MailAuth{Milters: milterClient(t, m.Addr), SpoolDir: env.Dir}})
			d := mailtest.Dial(t, "tcp", addr)
			d.Send("EHLO client.test")
			d.Expect("250 ")
			d.Send("MAIL FROM:<s@remote.example>")
			d.Expect("250")
			for _, r := range c.rcpts {
				d.Send("RCPT TO:<" + r.addr + ">")
				d.Expect(r.reply)
			}
			d.Send("DATA")
			d.Expect("354")
			msg := c.msg
			if msg == nil {
				msg = []string{"From: <s@remote.example>", "To: alice@example.org", "Subject: filtered", "", "body line"}
			}
			d.Send(append(msg, ".")...)
			d.Expect(c.data)
			if c.data == "550 5.6.0" {
				if h, _ := m.Received(); len(h) != 0 {
					t.Errorf("the milter was sent the malformed header: %q", h)
				}
			}
			for _, box := range []string{"alice", "alice/.Junk", "bob"} {
				home, folder, _ := strings.Cut(box, "/")
				got := mailtest.FolderMessages(t, env.MailRoot, "example.org/"+home, folder)
				if len(got) != c.want[box] {
					t.Errorf("%s has %d messages, want %d", box, len(got), c.want[box])
					continue
				}
				for _, msg := range got {
					for _, w := range c.contains[box] {
						if !strings.Contains(msg, w) {
							t.Errorf("%s's message lacks %q:\n%s", box, w, msg)
						}
					}
					for _, w := range c.absent[box] {
						if strings.Contains(msg, w) {
							t.Errorf("%s's message has %q:\n%s", box, w, msg)
						}
					}
				}
			}
			q.mu.Lock()
			defer q.mu.Unlock()
			if len(q.msgs) != 0 {
				t.Errorf("the MX queued %+v: an open relay", q.msgs)
			}
		})
	}
}

// TestSubmissionMilterAddsRemoteRecipient: on submission a milter may add
// a recipient anywhere (the user may send anywhere), and the message goes
// to the queue for it with the local copy in the same durable write.
func TestSubmissionMilterAddsRemoteRecipient(t *testing.T) {
	env := newEnv(t)
	m := fakemilter.Start(t, atEnd(mod('+', "<carol@remote.example>\x00"), cont))
	q := &fakeQueue{}
	addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.Submission, Queue: q, AuthFailureDelay: -1,
		Auth: smtp.MailAuth{Milters: milterClient(t, m.Addr), SpoolDir: env.Dir}})
	d := mailtest.Dial(t, "tcp", addr)
	login(d)
	send(d, "alice@example.org", []string{"bob@example.org"}, "From: <alice@example.org>", "Subject: to bob", "", "hi")
	d.Expect("250 ")
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.msgs) != 1 || !slices.Equal(q.msgs[0].to, []string{"bob@example.org", "carol@remote.example"}) {
		t.Fatalf("queued %+v, want one message to bob and carol", q.msgs)
	}
}

// macroRecorder is a fake milter's answer that records the macros it is
// sent ({name} -> value) and answers everything else as usual.
type macroRecorder struct {
	mu     sync.Mutex
	macros map[string]string
	host   string // the connect event's host name
}

func (m *macroRecorder) answer(code byte, data []byte) ([][]byte, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch code {
	case 'D':
		kv := strings.Split(strings.TrimSuffix(string(data[1:]), "\x00"), "\x00")
		for i := 0; i+1 < len(kv); i += 2 {
			m.macros[kv[i]] = kv[i+1]
		}
	case 'C':
		m.host, _, _ = strings.Cut(string(data), "\x00")
	}
	return nil, ""
}

func (m *macroRecorder) get() (map[string]string, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.macros), m.host
}

// TestMilterMacros: milters get the client's port, its host name as
// Postfix gives it ({client_name} forward-confirmed or "unknown",
// {client_ptr} the PTR name; the connect event's name "[addr]" without a
// confirmed one) and the SASL mechanism the user authenticated with.
func TestMilterMacros(t *testing.T) {
	dns := fakedns.Start(t,
		"3.0.0.127.in-addr.arpa. 60 IN PTR client.example.",
		"client.example. 60 IN A 127.0.0.3",
		"2.0.0.127.in-addr.arpa. 60 IN PTR liar.example.",
		"liar.example. 60 IN A 192.0.2.1",
	)
	res := resolve.New(resolve.Options{Server: dns.Addr})
	for _, c := range []struct {
		name       string
		resolver   smtp.NameResolver
		local      string // the client's address
		clientName string
		ptr        string
		host       string
	}{
		{"confirmed name", res, "127.0.0.3", "client.example", "client.example", "client.example"},
		{"PTR name that does not lead back", res, "127.0.0.2", "unknown", "liar.example", "[127.0.0.2]"},
		{"no resolver", nil, "127.0.0.1", "unknown", "unknown", "[127.0.0.1]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := newEnv(t)
			rec := &macroRecorder{macros: map[string]string{}}
			m := fakemilter.Start(t, rec.answer)
			addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.MX,
				Auth: smtp.MailAuth{Milters: milterClient(t, m.Addr), Resolver: c.resolver, SpoolDir: env.Dir}})
			conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.local)}}).Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			d := mailtest.DialConn(t, conn)
			d.Send("EHLO client.test")
			d.Expect("250 ")
			send(d, "s@remote.example", []string{"alice@example.org"}, "Subject: x", "", "y")
			d.Expect("250 ")
			got, host := rec.get()
			port := strconv.Itoa(conn.LocalAddr().(*net.TCPAddr).Port)
			want := map[string]string{"{client_addr}": c.local, "{client_port}": port, "{client_name}": c.clientName,
				"{client_ptr}": c.ptr, "_": c.clientName + " [" + c.local + "]", "{daemon_name}": "smtp", "j": "mx.test"}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("macro %s = %q, want %q", k, got[k], v)
				}
			}
			if host != c.host {
				t.Errorf("connect event's host name %q, want %q", host, c.host)
			}
		})
	}

	t.Run("auth_type", func(t *testing.T) {
		env := newEnv(t)
		rec := &macroRecorder{macros: map[string]string{}}
		m := fakemilter.Start(t, rec.answer)
		addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.Submission, Queue: &fakeQueue{}, AuthFailureDelay: -1,
			Auth: smtp.MailAuth{Milters: milterClient(t, m.Addr), SpoolDir: env.Dir}})
		d := mailtest.Dial(t, "tcp", addr)
		d.Send("EHLO client.test")
		d.Expect("250 ")
		d.Send("AUTH LOGIN")
		d.Expect("334")
		d.Send(base64.StdEncoding.EncodeToString([]byte("alice@example.org")))
		d.Expect("334")
		d.Send(base64.StdEncoding.EncodeToString([]byte("secret")))
		d.Expect("235")
		send(d, "alice@example.org", []string{"bob@example.org"}, "From: <alice@example.org>", "", "y")
		d.Expect("250 ")
		got, _ := rec.get()
		if got["{auth_type}"] != "LOGIN" || got["{auth_authen}"] != "alice@example.org" {
			t.Errorf("{auth_type} %q, {auth_authen} %q; want LOGIN, alice@example.org", got["{auth_type}"], got["{auth_authen}"])
		}
	})
}
