package managesieve

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"mailroom/internal/authdelay"
)

func TestGreeting(t *testing.T) {
	e := newEnv(t, envOptions{tls: true})
	c := e.dial(t)
	g := c.response()
	for _, want := range []string{`"IMPLEMENTATION" "mailroom"`, `"SASL" "PLAIN LOGIN"`, `"STARTTLS"`, `"MAXREDIRECTS" "4"`,
		`"VERSION" "1.0"`, `"UNAUTHENTICATE"`} {
		if !strings.Contains(g, want+"\n") {
			t.Errorf("greeting lacks %s:\n%s", want, g)
		}
	}
	if !strings.Contains(g, `"SIEVE" "body comparator-i;ascii-numeric`) || !strings.Contains(g, " vacation ") {
		t.Errorf("SIEVE capability:\n%s", g)
	}
	if !strings.HasPrefix(last(g), "OK ") {
		t.Errorf("greeting ends %q", last(g))
	}
	if r := c.cmd("capability"); r != strings.Replace(g, last(g), `OK "Capability completed"`, 1) {
		t.Errorf("CAPABILITY differs from the greeting:\n%s", r)
	}
	c.login()
	r := c.cmd("CAPABILITY")
	if strings.Contains(r, "SASL") || strings.Contains(r, "STARTTLS") || !strings.Contains(r, `"OWNER" "alice@example.org"`) {
		t.Errorf("capabilities once authenticated:\n%s", r)
	}
	if r := c.cmd("LOGOUT"); r != `OK "Logout completed"` {
		t.Errorf("LOGOUT: %s", r)
	}
	if _, err := c.br.ReadByte(); err == nil {
		t.Error("the connection stays open after LOGOUT")
	}
}

// TestScripts runs every script command through one session, in the
// order a client's editor would.
func TestScripts(t *testing.T) {
	e := newEnv(t, envOptions{maxScripts: 3})
	c := e.dial(t)
	c.response()
	good := "require \"fileinto\";\r\nif header :contains \"subject\" \"x\" { fileinto \"X\"; }\r\n"
	steps := []struct{ send, want string }{
		{"LISTSCRIPTS", `NO "Authenticate first"`},
		{`PUTSCRIPT "a" ` + lit("keep;"), `NO "Authenticate first"`},
		{"LOGIN", ""},
		{"LISTSCRIPTS", `OK "Listscripts completed"`},
		{`HAVESPACE "main" 100`, `OK "Putscript would succeed"`},
		{`HAVESPACE "main" 5000`, `NO (QUOTA/MAXSIZE) "a script may have at most 4096 octets"`},
		{`PUTSCRIPT "main" ` + lit(good), `OK "Putscript completed"`},
		{`PUTSCRIPT "bad" ` + lit("keep;\r\n  fileinto \"x\";\r\n"), `NO "bad:2:3: fileinto needs require \"fileinto\""`},
		{`CHECKSCRIPT ` + lit("stop;"), `OK "Script is valid"`},
		{`CHECKSCRIPT "if true {"`, `NO "1:10: expected a command or '}' but found end of script"`},
		{`GETSCRIPT "main"`, fmt.Sprintf("{%d}\n%s\nOK \"Getscript completed\"", len(good), good)},
		{`GETSCRIPT "nope"`, `NO (NONEXISTENT) "There is no script of that name"`},
		{`SETACTIVE "nope"`, `NO (NONEXISTENT) "There is no script of that name"`},
		{`SETACTIVE "main"`, `OK "Setactive completed"`},
		{"LISTSCRIPTS", "\"main\" ACTIVE\nOK \"Listscripts completed\""},
		{`DELETESCRIPT "main"`, `NO (ACTIVE) "The script is active: make another one active first"`},
		{`PUTSCRIPT "other" "discard;"`, `OK "Putscript completed"`},
		{`RENAMESCRIPT "main" "other"`, `NO (ALREADYEXISTS) "A script of that name exists"`},
		{`RENAMESCRIPT "main" "Grüße"`, `OK "Renamescript completed"`},
		{"LISTSCRIPTS", "\"Grüße\" ACTIVE\n\"other\"\nOK \"Listscripts completed\""},
		{`PUTSCRIPT "third" "keep;"`, `OK "Putscript completed"`},
		{`PUTSCRIPT "fourth" "keep;"`, `NO (QUOTA/MAXSCRIPTS) "at most 3 scripts per user"`},
		{`PUTSCRIPT "third" "stop;"`, `OK "Putscript completed"`},
		{`DELETESCRIPT "third"`, `OK "Deletescript completed"`},
		{`PUTSCRIPT ".hidden" "keep;"`, `NO "Invalid script name: invalid script name \".hidden\": no \"/\" and no leading \".\""`},
		{`PUTSCRIPT "a/b" "keep;"`, `NO "Invalid script name: invalid script name \"a/b\": no \"/\" and no leading \".\""`},
		{`SETACTIVE ""`, `OK "Setactive completed"`},
		{"LISTSCRIPTS", "\"Grüße\"\n\"other\"\nOK \"Listscripts completed\""},
		{`NOOP "t1"`, `OK (TAG "t1") "Done"`},
		{`NOOP`, `OK "Done"`},
		{"UNAUTHENTICATE", `OK "Unauthenticate completed"`},
		{"LISTSCRIPTS", `NO "Authenticate first"`},
	}
	for _, s := range steps {
		if s.send == "LOGIN" {
			c.login()
			continue
		}
		if got := c.cmd(s.send); got != s.want {
			t.Errorf("%q:\n got %s\nwant %s", s.send, got, s.want)
		}
	}
	if src, _ := e.scripts.Get("example.org/alice", "Grüße"); string(src) != good {
		t.Errorf("stored script %q", src)
	}
}

// TestBadInput: malformed commands get NO and the session goes on; too
// many end it; a literal over the limit is skipped and refused.
func TestBadInput(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial(t)
	c.response()
	c.login()
	steps := []struct{ send, want string }{
		{"FROB\r\n", `NO "Unknown command \"FROB\""`},
		{"\r\n", `NO "Expected a command name"`},
		{"GETSCRIPT\r\n", `NO "GETSCRIPT takes 1 arguments"`},
		{"GETSCRIPT 12\r\n", `NO "GETSCRIPT: argument 1 must be a string"`},
		{"HAVESPACE \"a\" \"b\"\r\n", `NO "HAVESPACE: argument 2 must be a number"`},
		{"HAVESPACE \"a\" 99999999999\r\n", `NO "Number too large"`},
		{"GETSCRIPT \"unterminated\r\n", `NO "A quoted string may not hold CR, LF or NUL"`},
		{"GETSCRIPT \"a\\x\"\r\n", `NO "Only \\\" and \\\\ may be escaped in a quoted string"`},
		{"PUTSCRIPT \"big\" {5000+}\r\n" + strings.Repeat("x", 5000) + "\r\n", `NO (QUOTA/MAXSIZE) "The script is larger than 4096 octets"`},
		{"NOOP \"still here\"\r\n", `OK (TAG "still here") "Done"`},
	}
	for _, s := range steps {
		c.send(s.send)
		if got := c.response(); got != s.want {
			t.Errorf("%q:\n got %s\nwant %s", s.send, got, s.want)
		}
	}
	// Pipelined: answered in order.
	c.send("NOOP \"1\"\r\nNOOP \"2\"\r\n")
	if a, b := c.response(), c.response(); a != `OK (TAG "1") "Done"` || b != `OK (TAG "2") "Done"` {
		t.Errorf("pipelined: %s / %s", a, b)
	}
	for i := 0; ; i++ {
		c.send("FROB\r\n")
		r := c.response()
		if strings.HasPrefix(r, "BYE") {
			if r != `BYE "Too many invalid commands"` || i != maxBadCommands-9 {
				t.Errorf("after %d more: %s", i, r)
			}
			break
		}
		if i > maxBadCommands {
			t.Fatal("never ended the session")
		}
	}
	// A line that never ends closes the connection.
	c = e.dial(t)
	c.response()
	c.send("NOOP \"" + strings.Repeat("x", maxLine+10))
	if r := c.response(); r != `BYE "Command too long"` {
		t.Errorf("endless line: %s", r)
	}
}

func TestAuthenticate(t *testing.T) {
	e := newEnv(t, envOptions{})
	cases := []struct {
		name  string
		steps []struct{ send, want string }
	}{
		{"plain without initial response", []struct{ send, want string }{
			{`AUTHENTICATE "PLAIN"`, `""`},
			{`"` + plain("alice@example.org", "secret") + `"`, `OK "Logged in"`},
		}},
		{"plain as a literal", []struct{ send, want string }{
			{`AUTHENTICATE "plain" ` + lit(plain("bob@example.org", "secret")), `OK "Logged in"`},
		}},
		{"login", []struct{ send, want string }{
			{`AUTHENTICATE "LOGIN"`, `"VXNlcm5hbWU6"`},
			{`"YWxpY2VAZXhhbXBsZS5vcmc="`, `"UGFzc3dvcmQ6"`},
			{`"c2VjcmV0"`, `OK "Logged in"`},
		}},
		{"cancelled", []struct{ send, want string }{
			{`AUTHENTICATE "PLAIN"`, `""`},
			{`"*"`, `NO "Authentication cancelled"`},
			{`LISTSCRIPTS`, `NO "Authenticate first"`},
		}},
		{"other mechanism", []struct{ send, want string }{
			{`AUTHENTICATE "CRAM-MD5"`, `NO "Only PLAIN and LOGIN are supported"`},
		}},
		{"acting for another", []struct{ send, want string }{
			{`AUTHENTICATE "PLAIN" "` + b64("bob@example.org\x00alice@example.org\x00secret") + `"`, `NO "Authentication failed"`},
		}},
		{"bad base64", []struct{ send, want string }{
			{`AUTHENTICATE "PLAIN" "!!!"`, `NO "Invalid base64 in the SASL response"`},
		}},
		{"twice", []struct{ send, want string }{
			{`AUTHENTICATE "PLAIN" "` + plain("alice@example.org", "secret") + `"`, `OK "Logged in"`},
			{`AUTHENTICATE "PLAIN" "` + plain("alice@example.org", "secret") + `"`, `NO "Already authenticated"`},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial(t)
			c.response()
			for _, s := range tc.steps {
				c.send(s.send + "\r\n")
				got := c.line()
				if got != s.want {
					t.Errorf("%s: got %s, want %s", s.send, got, s.want)
				}
			}
		})
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// line reads one response line (a challenge is a line of its own).
func (c *client) line() string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// TestPlaintextOnlyOnLoopbackOrTLS: from the network, AUTHENTICATE
// needs TLS (SASL is empty until STARTTLS) unless allow_insecure_auth.
func TestPlaintextOnlyOnLoopbackOrTLS(t *testing.T) {
	e := newEnv(t, envOptions{tls: true, remote: true})
	c := e.dial(t)
	g := c.response()
	if !strings.Contains(g, `"SASL" ""`) || !strings.Contains(g, `"STARTTLS"`) {
		t.Errorf("greeting without TLS from the network:\n%s", g)
	}
	if r := c.cmd(`AUTHENTICATE "PLAIN" "` + plain("alice@example.org", "secret") + `"`); r != `NO (ENCRYPT-NEEDED) "TLS is required to authenticate"` {
		t.Errorf("AUTHENTICATE in clear: %s", r)
	}
	// STARTTLS, with a command injected after it in clear: dropped.
	c.send("STARTTLS\r\nLISTSCRIPTS\r\n")
	if r := c.response(); r != `OK "Begin TLS negotiation now"` {
		t.Fatalf("STARTTLS: %s", r)
	}
	tc := tls.Client(c.nc, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.nc, c.br = tc, bufio.NewReader(tc)
	caps := c.response()
	if !strings.Contains(caps, `"SASL" "PLAIN LOGIN"`) || strings.Contains(caps, "STARTTLS") || last(caps) != `OK "TLS negotiation successful"` {
		t.Errorf("capabilities after STARTTLS:\n%s", caps)
	}
	c.login()
	if r := c.cmd("LISTSCRIPTS"); r != `OK "Listscripts completed"` {
		t.Errorf("LISTSCRIPTS under TLS: %s", r)
	}
	e2 := newEnv(t, envOptions{remote: true, insecure: true})
	c2 := e2.dial(t)
	if g := c2.response(); !strings.Contains(g, `"SASL" "PLAIN LOGIN"`) {
		t.Errorf("allow_insecure_auth: %s", g)
	}
	c2.login()
}

// TestThrottle: one mistyped password may be corrected at once; a second
// failure makes the address wait, on every connection; the third failed
// or refused attempt on one connection ends it.
func TestThrottle(t *testing.T) {
	now := time.Unix(1e9, 0)
	th := authdelay.New(time.Second, func() time.Time { return now })
	e := newEnv(t, envOptions{throttle: th})
	c := e.dial(t)
	c.response()
	bad := `AUTHENTICATE "PLAIN" "` + plain("alice@example.org", "wrong") + `"`
	for range 2 {
		if r := c.cmd(bad); r != `NO "Authentication failed"` {
			t.Fatalf("wrong password: %s", r)
		}
	}
	// Too early, even with the right password.
	if r := c.cmd(`AUTHENTICATE "PLAIN" "` + plain("alice@example.org", "secret") + `"`); r != `NO (TRYLATER) "Too many failed logins from your address, try again later"` {
		t.Errorf("right password while held back: %s", r)
	}
	if _, err := c.br.ReadByte(); err == nil {
		t.Error("the connection stays open after three failed attempts")
	}
	c2 := e.dial(t)
	c2.response()
	if r := c2.cmd(`AUTHENTICATE "PLAIN" "` + plain("alice@example.org", "secret") + `"`); !strings.Contains(r, "TRYLATER") {
		t.Errorf("held back on another connection too: %s", r)
	}
	now = now.Add(2 * time.Second)
	c3 := e.dial(t)
	c3.response()
	c3.login()
	if !strings.Contains(e.log.String(), "event=auth_failed") || strings.Contains(e.log.String(), "wrong") {
		t.Errorf("log: failure not logged, or the password is in it:\n%s", e.log)
	}
}

// TestShutdown: an idle client is told BYE; Shutdown returns once it is
// gone.
func TestShutdown(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial(t)
	c.response()
	c.login()
	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(t.Context()) }()
	if r := c.response(); r != `BYE (TRYLATER) "Server shutting down"` {
		t.Errorf("on shutdown: %s", r)
	}
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// TestPreAuthBounds: a client that has not authenticated can make the
// server hold no more than a few KiB for it: a literal beyond
// maxPreAuthLiteral, or more than maxPreAuthOctets in all, ends the
// connection, whatever the script size limit for users.
func TestPreAuthBounds(t *testing.T) {
	e := newEnv(t, envOptions{maxScriptSize: 256 << 10})
	tests := []struct {
		name string
		send func(c *client)
		want string
	}{
		{"literal over the pre-auth limit", func(c *client) {
			c.send("NOOP " + lit(strings.Repeat("x", maxPreAuthLiteral+1)) + "\r\n")
		}, `BYE "Command too long"`},
		{"literals that add up over it", func(c *client) {
			half := lit(strings.Repeat("x", maxPreAuthLiteral/2+1))
			c.send("NOOP " + half + " " + half + "\r\n")
		}, `BYE "Command too long"`},
		{"a SASL response over it", func(c *client) {
			c.send("AUTHENTICATE \"PLAIN\"\r\n")
			if r, _ := c.br.ReadString('\n'); r != "\"\"\r\n" {
				t.Fatalf("challenge: %q", r)
			}
			c.send(lit(strings.Repeat("A", maxPreAuthLiteral+4)) + "\r\n")
		}, `BYE "Connection error"`},
		{"endless small commands", func(c *client) {
			cmd := `NOOP "` + strings.Repeat("x", 1000) + "\"\r\n"
			for i := 0; (i+1)*len(cmd) <= maxPreAuthOctets; i++ {
				c.send(cmd)
				if r := c.response(); !strings.HasPrefix(r, "OK") {
					c.t.Fatalf("command %d: %s", i, r)
				}
			}
			c.send(cmd)
		}, `BYE "Too much data before authentication"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.dial(t)
			c.response()
			tt.send(c)
			if r := c.response(); r != tt.want {
				t.Errorf("got %s, want %s", r, tt.want)
			}
		})
	}
	// Once authenticated, a literal up to the script limit is read, and
	// all of a command's literals together are held to it.
	c := e.dial(t)
	c.response()
	c.login()
	script := "# " + strings.Repeat("x", 100<<10) + "\r\nkeep;\r\n"
	if r := c.cmd("CHECKSCRIPT " + lit(script)); r != `OK "Script is valid"` {
		t.Errorf("large script: %s", r)
	}
	big := lit(strings.Repeat("x", 100<<10))
	if r := c.cmd("CHECKSCRIPT " + big + " " + big + " " + big); r != `NO (QUOTA/MAXSIZE) "The script is larger than 262144 octets"` {
		t.Errorf("three literals: %s", r)
	}
	if r := c.cmd("NOOP"); r != `OK "Done"` {
		t.Errorf("after: %s", r)
	}
	// A script of the largest size, its name sent as a literal too.
	max := "#" + strings.Repeat("x", 256<<10-8) + "\n\nkeep;" // 256 KiB
	if r := c.cmd("PUTSCRIPT " + lit("largest") + " " + lit(max)); r != `OK "Putscript completed"` {
		t.Errorf("a script of %d octets: %s", len(max), r)
	}
}

// TestLiteralResync: after a bad command, the literals it announced are
// skipped, never read as commands (here a DELETESCRIPT hidden in a
// script's text); a literal header that cannot be read ends the
// connection, since nothing says where its octets end.
func TestLiteralResync(t *testing.T) {
	e := newEnv(t, envOptions{})
	home := "example.org/alice"
	hidden := "DELETESCRIPT \"precious\"\r\n"
	tests := []struct {
		name  string
		send  string
		wants []string
	}{
		{"syntax error before a literal", `PUTSCRIPT "a\x" ` + lit(hidden) + "\r\nNOOP\r\n",
			[]string{`NO "Only \\\" and \\\\ may be escaped in a quoted string"`, `OK "Done"`}},
		{"two literals after the error", "PUTSCRIPT \"a\" 12x " + lit(hidden) + " " + lit(hidden) + "\r\nNOOP\r\n",
			[]string{`NO "Expected a space or the end of the line after PUTSCRIPT"`, `OK "Done"`}},
		{"error after a literal", `PUTSCRIPT "a" ` + lit("keep;") + " junk " + lit(hidden) + "\r\nNOOP\r\n",
			[]string{`NO "Expected a string or a number"`, `OK "Done"`}},
		{"literal over the limit", `PUTSCRIPT "a" ` + lit(strings.Repeat("#", 5000)+"\r\n"+hidden) + "\r\nNOOP\r\n",
			[]string{`NO (QUOTA/MAXSIZE) "The script is larger than 4096 octets"`, `OK "Done"`}},
		{"length too large", `PUTSCRIPT "a" {99999999999+}` + "\r\n" + hidden,
			[]string{`BYE "Malformed literal"`}},
		{"no } after the length", `PUTSCRIPT "a" {25x}` + "\r\n" + hidden,
			[]string{`BYE "Malformed literal"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := e.scripts.Put(home, "precious", []byte("keep;")); err != nil {
				t.Fatal(err)
			}
			c := e.dial(t)
			c.response()
			c.login()
			c.send(tt.send)
			for _, want := range tt.wants {
				if r := c.response(); r != want {
					t.Errorf("got %s, want %s", r, want)
				}
			}
			if _, err := e.scripts.Get(home, "precious"); err != nil {
				t.Errorf("the literal's text was run as a command: %v", err)
			}
		})
	}
}
