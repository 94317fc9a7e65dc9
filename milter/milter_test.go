package milter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/textproto"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	gomilter "github.com/emersion/go-milter"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/fakemilter"
	"mailroom/internal/msghdr"
)

func newClient(t *testing.T, action Action, timeout time.Duration, milters ...string) *Client {
	t.Helper()
	c, err := New(Options{Milters: milters, DefaultAction: action, Timeout: timeout, Hostname: "mx.test", Daemon: "mx"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const testMsg = "From: a@example.net\r\nTo: b@example.org\r\nSubject: hello\r\n\tworld\r\nX-Twice: 1\r\nX-Twice: 2\r\n\r\nbody line\r\n"

func header(t *testing.T) (msghdr.Header, func() io.Reader) {
	t.Helper()
	h, n, err := msghdr.Read(bufio.NewReader(strings.NewReader(testMsg)), 0)
	if err != nil {
		t.Fatal(err)
	}
	return h, func() io.Reader { return strings.NewReader(testMsg[n:]) }
}

// run is a whole transaction: MAIL, one RCPT, the message.
func run(t *testing.T, c *Client) (*Outcome, *Reply) {
	t.Helper()
	ctx := t.Context()
	txn, r := c.Begin(ctx, ConnInfo{IP: net.ParseIP("192.0.2.1"), Port: 4321, Helo: "client.test", QueueID: "Q1"}, "a@example.net")
	if r != nil {
		return nil, r
	}
	defer txn.Close()
	if r := txn.Rcpt(ctx, "b@example.org"); r != nil {
		return nil, r
	}
	h, body := header(t)
	out := txn.Message(ctx, h, body, t.TempDir(), 1<<20)
	return out, out.Reply
}

func mods(ms ...string) [][]byte {
	var out [][]byte
	for _, m := range ms {
		out = append(out, fakemilter.Packet(m[0], m[1:]))
	}
	return append(out, fakemilter.Packet('c'))
}

func idx(i uint32) string { return string(binary.BigEndian.AppendUint32(nil, i)) }

// TestModificationsInTurn: each milter sees the message as the ones before
// it left it, and every change of the protocol is carried out.
func TestModificationsInTurn(t *testing.T) {
	first := fakemilter.Start(t, func(code byte, _ []byte) ([][]byte, string) {
		if code != 'E' {
			return nil, ""
		}
		return mods(
			"hX-First\x00added\x00",
			"i"+idx(0)+"X-Top\x00inserted\nfolded\x00",
			"m"+idx(2)+"X-Twice\x00second changed\x00",
			"m"+idx(1)+"Subject\x00\x00", // deleted
			"e<new@example.net>\x00",
			"+<c@example.org>\x00",
			"-<b@example.org>\x00",
			"bnew body\r\n",
			"bsecond chunk\r\n",
		), ""
	})
	second := fakemilter.Start(t, func(code byte, _ []byte) ([][]byte, string) {
		if code == 'E' {
			return mods("q" + "looks bad\x00"), ""
		}
		return nil, ""
	})
	out, r := run(t, newClient(t, TempFail, time.Second, first.Addr, second.Addr))
	if r != nil {
		t.Fatalf("refused: %v", r)
	}
	got := string(out.Header.Bytes())
	want := "X-Top: inserted\r\n\tfolded\r\nFrom: a@example.net\r\nTo: b@example.org\r\nX-Twice: 1\r\nX-Twice: second changed\r\nX-First: added\r\n\r\n"
	if got != want {
		t.Errorf("header:\n%q\nwant\n%q", got, want)
	}
	if out.From == nil || *out.From != "new@example.net" || !slices.Equal(out.Add, []string{"c@example.org"}) || !slices.Equal(out.Del, []string{"b@example.org"}) {
		t.Errorf("envelope changes: from %v add %q del %q", out.From, out.Add, out.Del)
	}
	if out.Body == nil {
		t.Fatal("body not replaced")
	}
	b, _ := io.ReadAll(out.Body.Reader(0))
	out.Body.Close()
	if string(b) != "new body\r\nsecond chunk\r\n" {
		t.Errorf("body = %q", b)
	}
	if !strings.Contains(out.Quarantine, "looks bad") {
		t.Errorf("quarantine = %q", out.Quarantine)
	}
	h1, b1 := first.Received()
	if !slices.Contains(h1, "Subject: hello\n\tworld") || b1 != "body line\r\n" {
		t.Errorf("the first milter got header %q and body %q", h1, b1)
	}
	h2, b2 := second.Received()
	if !slices.Contains(h2, "X-First: added") || slices.ContainsFunc(h2, func(s string) bool { return strings.HasPrefix(s, "Subject") }) ||
		b2 != "new body\r\nsecond chunk\r\n" {
		t.Errorf("the second milter did not see the first one's changes: header %q, body %q", h2, b2)
	}
}

func TestRefusals(t *testing.T) {
	for _, c := range []struct {
		name   string
		at     byte
		answer []byte
		code   int
		enh    string
		text   string
	}{
		{"reject at MAIL", 'M', fakemilter.Packet('r'), 550, "5.7.1", ""},
		{"tempfail at RCPT", 'R', fakemilter.Packet('t'), 451, "4.7.1", ""},
		{"reply code at end", 'E', fakemilter.Packet('y', "554 5.7.1 Spam message rejected\x00"), 554, "5.7.1", "Spam message rejected"},
		{"reply code without enhanced code", 'N', fakemilter.Packet('y', "450 try later\x00"), 450, "4.7.1", "try later"},
		{"421 without closing is 451", 'E', fakemilter.Packet('y', "421 4.7.0 go away\x00"), 451, "4.7.0", "go away"},
		{"multi-line reply", 'E', fakemilter.Packet('y', "550 5.7.0 first\r\n550 5.7.0 second\x00"), 550, "5.7.0", "first"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := fakemilter.Start(t, func(code byte, _ []byte) ([][]byte, string) {
				if code == c.at {
					return [][]byte{c.answer}, ""
				}
				return nil, ""
			})
			_, r := run(t, newClient(t, Accept, time.Second, f.Addr))
			if r == nil || r.Code != c.code || r.Enhanced != c.enh || (c.text != "" && r.Text != c.text) {
				t.Errorf("reply %+v, want %d %s %q", r, c.code, c.enh, c.text)
			}
		})
	}
	f := fakemilter.Start(t, func(code byte, _ []byte) ([][]byte, string) {
		if code == 'E' {
			return [][]byte{fakemilter.Packet('d')}, ""
		}
		return nil, ""
	})
	out, r := run(t, newClient(t, Accept, time.Second, f.Addr))
	if r != nil || !out.Discard {
		t.Errorf("discard: reply %v, discard %v", r, out.Discard)
	}
}

// TestFailuresGetTheDefaultAction: a milter that is not there, hangs,
// dies in the middle of the message, speaks garbage or keeps the stage
// going with progress packets gets milter_default_action, within the
// timeout.
func TestFailuresGetTheDefaultAction(t *testing.T) {
	garbage := []byte("\x00\x00\x00\x05zzzzz")
	failures := map[string]func(t *testing.T) string{
		"unreachable": func(t *testing.T) string { return "unix:" + filepath.Join(t.TempDir(), "none.sock") },
		"hangs at MAIL": func(t *testing.T) string {
			return fakemilter.Start(t, func(code byte, _ []byte) ([][]byte, string) { return nil, map[bool]string{true: "hang"}[code == 'M'] }).Addr
		},
		"hangs at the end": func(t *testing.T) string {
			return fakemilter.Start(t, func(code byte, _ []byte) ([][]byte, string) { return nil, map[bool]string{true: "hang"}[code == 'E'] }).Addr
		},
		"crashes in the body": func(t *testing.T) string {
			return fakemilter.Start(t, func(code byte, _ []byte) ([][]byte, string) { return nil, map[bool]string{true: "close"}[code == 'B'] }).Addr
		},
		"garbage after the header": func(t *testing.T) string {
			return fakemilter.Start(t, func(code byte, _ []byte) ([][]byte, string) {
				if code == 'N' {
					return [][]byte{garbage}, ""
				}
				return nil, ""
			}).Addr
		},
		"oversized packet": func(t *testing.T) string {
			return fakemilter.Start(t, func(code byte, _ []byte) ([][]byte, string) {
				if code == 'H' {
					return [][]byte{[]byte("\xff\xff\xff\xffc")}, ""
				}
				return nil, ""
			}).Addr
		},
		"reply code 250": func(t *testing.T) string {
			return fakemilter.Start(t, func(code byte, _ []byte) ([][]byte, string) {
				if code == 'E' {
					return [][]byte{fakemilter.Packet('y', "250 2.0.0 fine\x00")}, ""
				}
				return nil, ""
			}).Addr
		},
		"progress forever": func(t *testing.T) string {
			return fakemilter.Start(t, func(code byte, _ []byte) ([][]byte, string) {
				if code == 'E' {
					return slices.Repeat([][]byte{fakemilter.Packet('p')}, 100000), ""
				}
				return nil, ""
			}).Addr
		},
	}
	for name, start := range failures {
		for _, action := range []Action{TempFail, Accept, Reject, Quarantine} {
			t.Run(name+"/"+action.String(), func(t *testing.T) {
				t.Parallel()
				addr := start(t)
				begin := time.Now()
				out, r := run(t, newClient(t, action, 300*time.Millisecond, addr))
				if d := time.Since(begin); d > 3*time.Second {
					t.Errorf("took %v with a 300ms timeout", d)
				}
				switch action {
				case TempFail:
					if r == nil || r.Code != 451 {
						t.Errorf("reply %v, want 451", r)
					}
				case Reject:
					if r == nil || r.Code != 550 {
						t.Errorf("reply %v, want 550", r)
					}
				case Accept:
					if r != nil || out.Quarantine != "" {
						t.Errorf("reply %v quarantine %q, want the message accepted", r, out.Quarantine)
					}
				case Quarantine:
					if r != nil || out.Quarantine == "" {
						t.Errorf("reply %v quarantine %q, want it quarantined", r, out.Quarantine)
					}
				}
			})
		}
	}
}

// TestOurTroubleIsTemporary: a failure on our side (the spooled body
// unreadable, the session's context ended) is a tempfail whatever the
// default action says: "reject" would bounce mail for a local, passing
// failure, and "accept" would deliver it unfiltered.
func TestOurTroubleIsTemporary(t *testing.T) {
	m := fakemilter.Start(t, nil)
	for _, action := range []Action{Reject, Accept, Quarantine} {
		t.Run(action.String(), func(t *testing.T) {
			c := newClient(t, action, 5*time.Second, m.Addr)
			info := ConnInfo{IP: net.ParseIP("192.0.2.1"), Helo: "client.test"}
			txn, r := c.Begin(t.Context(), info, "a@example.net")
			if r != nil {
				t.Fatalf("MAIL refused: %v", r)
			}
			h, _ := header(t)
			unreadable := func() io.Reader {
				return io.MultiReader(strings.NewReader("body "), iotest.ErrReader(errors.New("input/output error")))
			}
			out := txn.Message(t.Context(), h, unreadable, t.TempDir(), 1<<20)
			txn.Close()
			if out.Reply == nil || out.Reply.Code != 451 || out.Quarantine != "" {
				t.Errorf("unreadable body: reply %v, quarantine %q; want 451", out.Reply, out.Quarantine)
			}

			ctx, cancel := context.WithCancel(t.Context())
			txn, r = c.Begin(ctx, info, "a@example.net")
			if r != nil {
				t.Fatalf("MAIL refused: %v", r)
			}
			defer txn.Close()
			cancel()
			if r := txn.Rcpt(ctx, "b@example.org"); r == nil || r.Code != 451 {
				t.Errorf("RCPT after the session's end: reply %v, want 451", r)
			}
			if _, r := c.Begin(ctx, info, "a@example.net"); r == nil || r.Code != 451 {
				t.Errorf("MAIL after the session's end: reply %v, want 451", r)
			}
		})
	}
}

// TestProtocolOptions: the stages a milter asks to leave out or not to
// answer are offered (libmilter milters without a negotiate callback,
// such as clamav-milter, hang up otherwise) and honoured: no HELO for
// SMFIP_NOHELO, no reply awaited for SMFIP_NR_HDR; an option we did not
// offer (SMFIP_RCPT_REJ) changes nothing.
func TestProtocolOptions(t *testing.T) {
	var mu sync.Mutex
	var offered uint32
	var codes []byte
	asked := gomilter.OptNoHelo | gomilter.OptNoHeaderReply | gomilter.OptRcptRej | gomilter.OptNoUnknown
	m := fakemilter.Start(t, func(code byte, data []byte) ([][]byte, string) {
		mu.Lock()
		defer mu.Unlock()
		codes = append(codes, code)
		switch code {
		case 'O':
			offered = binary.BigEndian.Uint32(data[8:])
			return [][]byte{negotiateProto(6, 0, asked)}, ""
		case 'L':
			return [][]byte{}, "" // SMFIP_NR_HDR: no reply
		}
		return nil, ""
	})
	out, r := run(t, newClient(t, TempFail, 5*time.Second, m.Addr))
	if r != nil {
		t.Fatalf("refused: %v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := uint32(protocols); offered != want || offered&uint32(gomilter.OptNoHelo|gomilter.OptNoUnknown|gomilter.OptNoData) == 0 {
		t.Errorf("offered protocol options %#x, want %#x", offered, want)
	}
	if bytes.IndexByte(codes, 'H') >= 0 || bytes.Count(codes, []byte{'L'}) != 5 || bytes.IndexByte(codes, 'E') < 0 {
		t.Errorf("commands sent %q: want no HELO, the 5 header fields, the end of the message", codes)
	}
	if len(out.Header) != 5 {
		t.Errorf("header after the milter: %d fields", len(out.Header))
	}
}

// TestOldProtocolMilter: a milter of protocol version 2 (go-milter's own
// server) is still spoken to, without the version 6 actions.
func TestOldProtocolMilter(t *testing.T) {
	path := filepath.Join(mailtest.ShortTempDir(t), "v2.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &gomilter.Server{NewMilter: func() gomilter.Milter { return addHeader{} }, Actions: gomilter.OptAddHeader}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	out, r := run(t, newClient(t, TempFail, time.Second, "unix:"+path))
	if r != nil {
		t.Fatalf("refused: %v", r)
	}
	if got := out.Header.Get("X-Old"); got != "yes" {
		t.Errorf("X-Old = %q; header %q", got, out.Header.Bytes())
	}
}

type addHeader struct{ gomilter.NoOpMilter }

func (addHeader) Headers(textproto.MIMEHeader, *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (addHeader) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	if err := m.AddHeader("X-Old", "yes"); err != nil {
		return nil, err
	}
	return gomilter.RespAccept, nil
}

func TestParseAddr(t *testing.T) {
	for in, want := range map[string]string{
		"unix:/run/rspamd/milter.sock": "unix /run/rspamd/milter.sock",
		"inet:127.0.0.1:11332":         "tcp 127.0.0.1:11332",
		"inet:[::1]:8891":              "tcp [::1]:8891",
		"inet:11332@localhost":         "",
		"unix:relative.sock":           "",
		"local:/x":                     "",
	} {
		n, a, err := ParseAddr(in)
		got := n + " " + a
		if err != nil {
			got = ""
		}
		if got != want {
			t.Errorf("ParseAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// FuzzEditHeader: no modification a milter sends can make a header that
// does not read back as the same fields, or panic.
func FuzzEditHeader(f *testing.F) {
	f.Add(byte('m'), uint32(1), "X-Twice", "v\nw")
	f.Add(byte('i'), uint32(99), "X-A", "")
	f.Add(byte('h'), uint32(0), "Bad Name", "x")
	f.Fuzz(func(t *testing.T, code byte, index uint32, name, value string) {
		h, _, _ := msghdr.Read(bufio.NewReader(strings.NewReader(testMsg)), 0)
		out, err := editHeader(slices.Clone(h), gomilter.ModifyAction{Code: gomilter.ModifyActCode(code), HeaderIndex: index, HeaderName: name, HeaderValue: value})
		if err != nil {
			return
		}
		back, _, err := msghdr.Read(bufio.NewReader(bytes.NewReader(out.Bytes())), 0)
		if err != nil || len(back) != len(out) {
			t.Fatalf("%d fields written, %d read back (%v):\n%q", len(out), len(back), err, out.Bytes())
		}
		if string(h.Bytes()) != testMsg[:strings.Index(testMsg, "\r\n\r\n")+4] {
			t.Fatal("the original header was changed")
		}
	})
}

// enhancedCode is RFC 3463's class.subject.detail, subject and detail of
// one to three digits.
var enhancedCode = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)

// FuzzReply: whatever code and text a milter's SMFIR_REPLYCODE carries,
// the reply is a 4xx or 5xx of one line with no control characters, its
// enhanced code well formed and of the same class, a 4xx stays
// temporary, and none is a 421 (which says the session is closing).
func FuzzReply(f *testing.F) {
	f.Add(uint16(554), "5.7.1 Spam message rejected")
	f.Add(uint16(450), "try later")
	f.Add(uint16(550), "5.+1.1 signed")
	f.Add(uint16(550), "5.0000.1 long")
	f.Add(uint16(451), "4.7.1 first\r\nsecond")
	f.Add(uint16(250), "2.0.0 fine")
	f.Add(uint16(550), "5.7.1 bell\x07 and esc\x1b")
	f.Fuzz(func(t *testing.T, code uint16, text string) {
		for _, act := range []*gomilter.Action{
			{Code: gomilter.ActReplyCode, SMTPCode: int(code), SMTPText: text},
			{Code: gomilter.ActTempFail},
			{Code: gomilter.ActReject},
		} {
			r := reply(act)
			if r.Code/100 != 4 && r.Code/100 != 5 || r.Code == 421 {
				t.Fatalf("%d %q: reply code %d", code, text, r.Code)
			}
			if !enhancedCode.MatchString(r.Enhanced) || int(r.Enhanced[0]-'0') != r.Code/100 {
				t.Fatalf("%d %q: enhanced code %q for %d", code, text, r.Enhanced, r.Code)
			}
			if strings.ContainsFunc(r.Text, func(c rune) bool { return c < ' ' && c != '\t' || c == 0x7f }) {
				t.Fatalf("%d %q: reply text %q has control characters", code, text, r.Text)
			}
			if code/100 == 4 && act.Code == gomilter.ActReplyCode && !r.Temporary() {
				t.Fatalf("%d %q: a temporary reply became %d", code, text, r.Code)
			}
		}
	})
}

// FuzzStageCount: the stage budget follows the milter's packet framing
// however the stream is cut into reads: it counts the packets other than
// progress exactly as a reading of the whole stream at once does, the
// octets too, and never panics.
func FuzzStageCount(f *testing.F) {
	f.Add(append(fakemilter.Packet('p'), fakemilter.Packet('h', "X-A\x00v\x00")...), uint8(3))
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x01c"), uint8(1))
	f.Add([]byte("\xff\xff\xff\xffc"), uint8(2))
	f.Fuzz(func(t *testing.T, stream []byte, cut uint8) {
		// The reference: whole packets, front to back.
		want := 0
		for b := stream; len(b) >= 4; {
			n := binary.BigEndian.Uint32(b)
			b = b[4:]
			if n > 0 && len(b) > 0 && b[0] != 'p' {
				want++
			}
			b = b[min(uint64(n), uint64(len(b))):]
		}
		c := &stageConn{}
		c.next(time.Time{}, int64(len(stream)), 1<<30)
		step := int(cut%16) + 1
		for i := 0; i < len(stream); i += step {
			if err := c.count(stream[i:min(i+step, len(stream))]); err != nil {
				t.Fatalf("within budget: %v", err)
			}
		}
		if got := 1<<30 - c.packets; got != want || c.octets != 0 {
			t.Fatalf("cut every %d: %d packets counted, %d octets left; want %d and 0", step, got, c.octets, want)
		}
		// One packet fewer allowed than sent, or one octet fewer: the
		// stage fails.
		if want > 0 {
			c := &stageConn{}
			c.next(time.Time{}, int64(len(stream)), want-1)
			if c.count(stream) == nil {
				t.Fatalf("%d packets passed a budget of %d", want, want-1)
			}
		}
		if len(stream) > 0 {
			c := &stageConn{}
			c.next(time.Time{}, int64(len(stream)-1), unlimited)
			if c.count(stream) == nil {
				t.Fatal("an octet over the budget passed")
			}
		}
	})
}

// negotiate is a fake milter's answer to the option negotiation: its
// protocol version and the actions it asks for.
func negotiate(version, actions uint32) []byte { return negotiateProto(version, actions, 0) }

// negotiateProto is negotiate with protocol options asked for too.
func negotiateProto(version, actions uint32, proto gomilter.OptProtocol) []byte {
	opt := binary.BigEndian.AppendUint32(nil, version)
	opt = binary.BigEndian.AppendUint32(opt, actions)
	opt = binary.BigEndian.AppendUint32(opt, uint32(proto))
	return fakemilter.Packet('O', string(opt))
}

// TestUnnegotiatedModification: a modification the milter did not
// negotiate (or that we did not offer: changing the sender after the
// downgrade to protocol version 2) is a protocol error; none of that
// milter's changes are made, and it gets the default action.
func TestUnnegotiatedModification(t *testing.T) {
	for _, c := range []struct {
		name string
		opt  []byte
		mods []string
	}{
		{"sender change, only add-header negotiated", negotiate(6, uint32(gomilter.OptAddHeader)), []string{"hX-Ok\x00yes\x00", "e<new@example.net>\x00"}},
		{"recipient added, not negotiated", negotiate(6, uint32(gomilter.OptAddHeader|gomilter.OptChangeFrom)), []string{"+<c@example.org>\x00"}},
		{"sender change after the version 2 downgrade", negotiate(2, 0x1ff), []string{"e<new@example.net>\x00"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := fakemilter.Start(t, func(code byte, _ []byte) ([][]byte, string) {
				switch code {
				case 'O':
					return [][]byte{c.opt}, ""
				case 'E':
					return mods(c.mods...), ""
				}
				return nil, ""
			})
			out, r := run(t, newClient(t, TempFail, time.Second, f.Addr))
			if r == nil || r.Code != 451 {
				t.Errorf("reply %v, want the default action's 451", r)
			}
			if out != nil && (out.From != nil || len(out.Add) != 0 || out.Header.Get("X-Ok") != "") {
				t.Errorf("changes made: from %v add %q header %q", out.From, out.Add, out.Header.Bytes())
			}
		})
	}
}

// TestModificationFlood: a milter that answers the end of a message with
// more modifications than any filter makes, or with more replacement
// body than the size limit, gets the default action at once, without
// the client's memory or CPU growing with what it sends (go-milter holds
// every modification until the final reply).
func TestModificationFlood(t *testing.T) {
	headers := slices.Repeat([][]byte{fakemilter.Packet('h', "X-Flood\x00value\x00")}, 200000)
	chunk := fakemilter.Packet('b', strings.Repeat("x", 1<<20-8))
	for _, c := range []struct {
		name    string
		packets [][]byte
	}{
		{"200000 added header fields", append(headers, fakemilter.Packet('c'))},
		{"64 MiB of replacement body, 1 MiB allowed", append(slices.Repeat([][]byte{chunk}, 64), fakemilter.Packet('c'))},
		{"progress packets in answer to a header field", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := fakemilter.Start(t, func(code byte, _ []byte) ([][]byte, string) {
				switch {
				case code == 'E' && c.packets != nil:
					return c.packets, ""
				case code == 'L' && c.packets == nil:
					return append(slices.Repeat([][]byte{fakemilter.Packet('p')}, 100000), fakemilter.Packet('c')), ""
				}
				return nil, ""
			})
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			done := make(chan *Reply, 1)
			go func() {
				_, r := run(t, newClient(t, TempFail, 30*time.Second, f.Addr))
				done <- r
			}()
			select {
			case r := <-done:
				if r == nil || r.Code != 451 {
					t.Errorf("reply %v, want the default action's 451", r)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the flood held the transaction for 20s")
			}
			runtime.ReadMemStats(&after)
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			// 1 MiB of body, the header edits' budget, and the
			// library's buffer of one packet (1 MiB) at a time.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 24<<20 {
				t.Errorf("the client allocated %d MiB for the flood", alloc>>20)
			}
		})
	}
}
