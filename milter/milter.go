// Package milter is mailroom's milter client: it hands each SMTP
// transaction (connection, HELO, MAIL, RCPT, header and body) to the
// filters of Sendmail's and Postfix's milter protocol (rspamd, opendkim,
// clamav-milter...) in turn, and reports what they decided and changed.
// The protocol itself is github.com/emersion/go-milter's client.
//
// Each transaction gets a connection of its own to each milter, opened at
// MAIL and closed when the transaction ends, so that no state is shared
// between messages and a milter's failure is contained to one of them. A
// milter that cannot be reached, does not answer within Timeout, or
// speaks garbage gets DefaultAction (Postfix's milter_default_action):
// the message is never lost, at worst the client is told to try later.
//
// The package knows nothing of delivery: the SMTP session applies the
// Outcome.
package milter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	gomilter "github.com/emersion/go-milter"
)

// Action is milter_default_action: what a failed milter amounts to.
type Action int

// Default actions, Postfix's names.
const (
	TempFail   Action = iota // 451 4.7.1: the client tries again later (Postfix's default)
	Accept                   // go on as if the milter were not configured
	Reject                   // 550 5.7.1
	Quarantine               // accept, into the Junk folder
)

// ParseAction reads milter_default_action.
func ParseAction(s string) (Action, error) {
	switch s {
	case "tempfail":
		return TempFail, nil
	case "accept":
		return Accept, nil
	case "reject":
		return Reject, nil
	case "quarantine":
		return Quarantine, nil
	}
	return TempFail, fmt.Errorf("%q: use \"tempfail\", \"accept\", \"reject\" or \"quarantine\"", s)
}

// String is the action's name in milter_default_action, as ParseAction
// reads it and logs show it.
func (a Action) String() string {
	switch a {
	case TempFail:
		return "tempfail"
	case Accept:
		return "accept"
	case Reject:
		return "reject"
	case Quarantine:
		return "quarantine"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Options configure a Client.
type Options struct {
	// Milters are "unix:/path/to/socket" or "inet:host:port" (Postfix's
	// smtpd_milters syntax), asked in this order.
	Milters []string
	// DefaultAction applies when a milter fails. Default TempFail.
	DefaultAction Action
	// Timeout bounds connecting and each stage's exchange (Postfix's
	// milter_command_timeout). Default 30s.
	Timeout time.Duration
	// Hostname is this server's name (the j macro); Daemon names the
	// role ("mx", "submission": {daemon_name}, which opendkim's
	// MTA setting and rspamd look at).
	Hostname, Daemon string
	Logger           *slog.Logger
}

// Client talks to the configured milters. It is safe for concurrent use.
type Client struct {
	opts    Options
	milters []target
	log     *slog.Logger
}

type target struct {
	name          string // as configured
	network, addr string
}

// ParseAddr splits "unix:/path" or "inet:host:port" into a network and
// address for net.Dial.
func ParseAddr(s string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(s, "unix:"):
		if p := strings.TrimPrefix(s, "unix:"); strings.HasPrefix(p, "/") {
			return "unix", p, nil
		}
	case strings.HasPrefix(s, "inet:"):
		hp := strings.TrimPrefix(s, "inet:")
		if _, port, err := net.SplitHostPort(hp); err == nil && port != "" {
			return "tcp", hp, nil
		}
	}
	return "", "", fmt.Errorf("milter %q: write \"unix:/run/rspamd/milter.sock\" or \"inet:127.0.0.1:11332\"", s)
}

// New returns a Client; the milters are first dialled at the first MAIL.
func New(opts Options) (*Client, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{opts: opts, log: opts.Logger}
	for _, m := range opts.Milters {
		network, addr, err := ParseAddr(m)
		if err != nil {
			return nil, err
		}
		c.milters = append(c.milters, target{name: m, network: network, addr: addr})
	}
	return c, nil
}

// Verdict is a milter's answer at one stage.
type Verdict int

// Verdicts.
const (
	Continue Verdict = iota // go on (SMFIR_CONTINUE, or ACCEPT: this milter is done)
	Refuse                  // refuse with Reply (REJECT, TEMPFAIL, REPLYCODE)
	Discard                 // accept and drop the message (DISCARD)
)

// Reply is an SMTP reply a milter chose (or the default one).
type Reply struct {
	Code     int    // 4xx or 5xx
	Enhanced string // "5.7.1"
	Text     string
}

// Error formats the reply for logs.
func (r *Reply) Error() string { return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text) }

// Temporary reports a 4xx reply.
func (r *Reply) Temporary() bool { return r.Code/100 == 4 }

// replyReject and replyTempFail are the default replies, a new value each
// time: the caller owns what it is given.
func replyReject() *Reply {
	return &Reply{Code: 550, Enhanced: "5.7.1", Text: "Message refused by a content filter"}
}

func replyTempFail() *Reply {
	return &Reply{Code: 451, Enhanced: "4.7.1", Text: "Content filter unavailable, try again later"}
}

// reply makes a milter's answer an SMTP reply: SMFIR_REPLYCODE's own text
// ("554 5.7.1 Spam message rejected"), or the default ones.
func reply(act *gomilter.Action) *Reply {
	switch act.Code {
	case gomilter.ActTempFail:
		return replyTempFail()
	case gomilter.ActReplyCode:
		if act.SMTPCode/100 == 4 || act.SMTPCode/100 == 5 {
			r := &Reply{Code: act.SMTPCode, Text: strings.TrimSpace(act.SMTPText)}
			if r.Code == 421 {
				// RFC 5321 §3.8: 421 says the server closes the
				// session, which a milter's refusal of one message
				// does not do (Postfix disconnects; we go on).
				r.Code = 451
			}
			// An enhanced code at the start of the text (RFC 3463).
			if code, rest, ok := strings.Cut(r.Text, " "); ok && isEnhanced(code, act.SMTPCode) {
				r.Enhanced, r.Text = code, strings.TrimSpace(rest)
			} else if act.SMTPCode/100 == 4 {
				r.Enhanced = "4.7.1"
			} else {
				r.Enhanced = "5.7.1"
			}
			// Only the first line: the text goes into one reply line,
			// and no other control character reaches the client's
			// terminal or log (RFC 5321 §4.2's textstring).
			r.Text, _, _ = strings.Cut(r.Text, "\r")
			r.Text, _, _ = strings.Cut(r.Text, "\n")
			r.Text = strings.Map(func(c rune) rune {
				if c < ' ' && c != '\t' || c == 0x7f {
					return ' '
				}
				return c
			}, r.Text)
			return r
		}
		if act.SMTPCode/100 == 4 {
			return replyTempFail()
		}
	}
	return replyReject()
}

func isEnhanced(s string, code int) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != strconv.Itoa(code/100) {
		return false
	}
	// RFC 3463 §2: subject and detail are 1 to 3 digits (Atoi would
	// take "+1" and "0000").
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 || strings.ContainsFunc(p, func(c rune) bool { return c < '0' || c > '9' }) {
			return false
		}
	}
	return true
}

// dialer dials one milter for one transaction and keeps the connection,
// so that the transaction can bound each stage (stageConn).
type dialer struct {
	timeout time.Duration
	conn    *stageConn
}

func (d *dialer) Dial(network, addr string) (net.Conn, error) {
	c, err := net.DialTimeout(network, addr, d.timeout)
	if err != nil {
		return nil, err
	}
	d.conn = &stageConn{Conn: c}
	d.conn.next(time.Now().Add(d.timeout), replyBudget, unlimited)
	return d.conn, nil
}

// Bounds on what a milter may send. go-milter reads whatever comes: any
// number of SMFIR_PROGRESS packets (each renewing its read timeout), and at
// the end of a message any number of modification packets of up to 1 MiB
// each, all held in memory until the final reply (docs/upstream/go-milter.md).
const (
	// replyBudget is what a milter may send in answer to one command:
	// its reply and progress packets (5 octets each).
	replyBudget = 64 << 10
	// maxModifications bounds one milter's modifications of one message
	// (header fields, recipients, body chunks...).
	maxModifications = 1000
	// headerEditBudget is what the modifications other than a new body
	// may take, in octets.
	headerEditBudget = 2 << 20
	unlimited        = -1
)

// errFlood is a milter that sent more than its stage allows.
var errFlood = errors.New("milter sent more than a stage allows")

// stageConn is a milter connection that bounds each stage of the
// conversation: deadlines the library sets are clamped to the stage's end,
// so that a milter sending progress packets cannot hold a stage longer
// than Timeout; what the milter sends counts against the stage's budget
// of octets and of packets other than progress, past which reading fails
// (and the milter gets the default action).
type stageConn struct {
	net.Conn
	until   time.Time
	octets  int64 // octets the milter may still send in this stage
	packets int   // packets other than progress it may still send; unlimited: no count

	// Where the stream is in the framing (a 4-octet length, then that
	// many octets, the first the command code).
	head    [4]byte
	headLen int
	remain  uint32
	atCode  bool
	err     error
}

// next starts a stage that ends at until, with the milter allowed octets
// and packets.
func (c *stageConn) next(until time.Time, octets int64, packets int) {
	c.until, c.octets, c.packets = until, octets, packets
}

// allow lets the milter send octets more in this stage (the answer to one
// more command).
func (c *stageConn) allow(octets int64) { c.octets += octets }

func (c *stageConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		if ferr := c.count(p[:n]); ferr != nil {
			c.err = ferr
			return 0, ferr
		}
	}
	return n, err
}

// count follows the packets in b against the budgets.
func (c *stageConn) count(b []byte) error {
	c.octets -= int64(len(b))
	if c.octets < 0 {
		return fmt.Errorf("%w: more octets than allowed", errFlood)
	}
	for len(b) > 0 {
		switch {
		case c.remain == 0:
			k := copy(c.head[c.headLen:], b)
			c.headLen += k
			b = b[k:]
			if c.headLen == 4 {
				c.remain = binary.BigEndian.Uint32(c.head[:])
				c.headLen, c.atCode = 0, c.remain > 0
			}
		case c.atCode:
			c.atCode = false
			if b[0] != 'p' && c.packets != unlimited {
				if c.packets--; c.packets < 0 {
					return fmt.Errorf("%w: more than %d modifications", errFlood, maxModifications)
				}
			}
			fallthrough
		default:
			k := min(uint32(len(b)), c.remain)
			c.remain -= k
			b = b[k:]
		}
	}
	return nil
}

func (c *stageConn) clamp(t time.Time) time.Time {
	if !t.IsZero() && t.Before(c.until) {
		return t
	}
	return c.until
}

func (c *stageConn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.clamp(t)) }
func (c *stageConn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.clamp(t)) }
func (c *stageConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.clamp(t)) }
