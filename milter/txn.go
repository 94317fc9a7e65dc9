package milter

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	gomilter "github.com/emersion/go-milter"

	"mailroom/internal/msghdr"
	"mailroom/internal/spool"
)

// ConnInfo describes the SMTP client and transaction for the milters
// (the connect event and the macros Postfix sends).
type ConnInfo struct {
	IP   net.IP // nil for a unix-socket client
	Port int    // the client's port
	// Name is the client's host name if verified (a PTR name that
	// resolves back to IP), PTR the first PTR name whether or not it
	// does; "" for none. Milters get them as Postfix gives them:
	// {client_name} and {client_ptr} "unknown" without one, and the
	// connect event's host name "[IP]" without a verified one (libmilter's
	// xxfi_connect).
	Name, PTR string
	Helo      string
	TLS       string // protocol version ("TLSv1.3"), "" without TLS
	Cipher    string
	AuthUser  string // the authenticated user, for {auth_authen}
	AuthType  string // the SASL mechanism it used ("PLAIN"), for {auth_type}
	QueueID   string // for the i macro
}

// Txn is one transaction's conversation with the milters. It is used by
// one SMTP session at a time.
type Txn struct {
	c          *Client
	info       ConnInfo
	ms         []*session
	quarantine string
	discard    bool
}

// session is one milter's part in a transaction.
type session struct {
	name string
	s    *gomilter.ClientSession
	conn *stageConn
	// allowed are the modifications negotiated: offered by us and asked
	// for by the milter (the library keeps the milter's mask as it is).
	allowed gomilter.OptAction
	done    bool // accepted the message, or failed with Accept: not asked again
}

// stage starts a stage: the milter's replies must come within Timeout,
// and be no more than the answer to one command (allow adds the next).
func (t *Txn) stage(m *session) {
	if m.conn != nil {
		m.conn.next(time.Now().Add(t.c.opts.Timeout), replyBudget, unlimited)
	}
}

// allow lets a milter answer one more command in the stage.
func (m *session) allow() {
	if m.conn != nil {
		m.conn.allow(replyBudget)
	}
}

// fail applies the default action to a milter that could not do its
// part. It returns the reply to give, or nil to go on.
func (t *Txn) fail(m *session, stage string, err error) *Reply {
	m.done = true
	t.c.log.Warn("milter failed: default action", "milter", m.name, "stage", stage, "err", err,
		"action", t.c.opts.DefaultAction.String())
	t.hangUp(m)
	switch t.c.opts.DefaultAction {
	case Accept:
		return nil
	case Quarantine:
		if t.quarantine == "" {
			t.quarantine = fmt.Sprintf("milter %s unavailable", m.name)
		}
		return nil
	case Reject:
		return replyReject()
	}
	return replyTempFail()
}

// abandon ends the conversation with a milter for trouble of our own
// (the session ending, the spooled message unreadable), which is not the
// milter's fault: the default action is for failed milters, and even
// "reject" or "accept" must not turn a local, temporary failure into a
// refusal for good or an unfiltered delivery. The reply is a tempfail.
func (t *Txn) abandon(m *session, stage string, err error) *Reply {
	m.done = true
	t.c.log.Warn("milter conversation abandoned: temporary failure", "milter", m.name, "stage", stage, "err", err)
	t.hangUp(m)
	return replyTempFail()
}

// answer turns a milter's action at a stage into a reply (nil: go on).
func (t *Txn) answer(m *session, stage string, act *gomilter.Action) *Reply {
	switch act.Code {
	case gomilter.ActContinue, gomilter.ActSkip:
		return nil
	case gomilter.ActAccept:
		// RFC-less but clear: this milter wants no more of the message.
		m.done = true
		return nil
	case gomilter.ActDiscard:
		t.discard = true
		m.done = true
		t.c.log.Info("milter discards the message", "milter", m.name, "stage", stage)
		return nil
	case gomilter.ActReplyCode:
		if c := act.SMTPCode / 100; c != 4 && c != 5 {
			// Neither a refusal nor a tempfail: a protocol error, not
			// the 550 it would otherwise become.
			return t.fail(m, stage, fmt.Errorf("reply code %d is not 4xx or 5xx", act.SMTPCode))
		}
	}
	r := reply(act)
	t.c.log.Info("milter refuses", "milter", m.name, "stage", stage, "reply", r.Error())
	return r
}

// Begin opens a transaction for the envelope sender from: each milter is
// dialled and told of the connection, HELO and MAIL, in turn. A reply
// refuses MAIL (the Txn is then closed).
func (c *Client) Begin(ctx context.Context, info ConnInfo, from string) (*Txn, *Reply) {
	t := &Txn{c: c, info: info}
	for _, tg := range c.milters {
		m := &session{name: tg.name}
		t.ms = append(t.ms, m)
		if r := t.open(ctx, m, tg, from); r != nil {
			t.Close()
			return nil, r
		}
	}
	return t, nil
}

// actions are what the SMTP session can carry out; a milter is refused
// what we could not honour.
const actions = gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptChangeBody |
	gomilter.OptAddRcpt | gomilter.OptRemoveRcpt | gomilter.OptQuarantine | gomilter.OptChangeFrom

// protocols are what a milter may ask of the conversation: to leave out
// a stage (SMFIP_NOCONNECT... SMFIP_NOBODY, SMFIP_NOUNKNOWN, SMFIP_NODATA),
// not to answer one (SMFIP_NR_*), to skip the rest of the body
// (SMFIP_SKIP). go-milter's client honours each. A libmilter milter
// without a negotiate callback (clamav-milter) asks to leave out the
// stages it has no callback for and hangs up on an MTA that does not
// offer that; Postfix offers them all. Not offered: SMFIP_RCPT_REJ (we
// do not send refused recipients) and SMFIP_HDR_LEADSPC (header values
// go without their leading space).
const protocols = gomilter.OptNoConnect | gomilter.OptNoHelo | gomilter.OptNoMailFrom | gomilter.OptNoRcptTo |
	gomilter.OptNoBody | gomilter.OptNoHeaders | gomilter.OptNoEOH | gomilter.OptNoUnknown | gomilter.OptNoData |
	gomilter.OptSkip | gomilter.OptNoHeaderReply | gomilter.OptNoConnReply | gomilter.OptNoHeloReply |
	gomilter.OptNoMailReply | gomilter.OptNoRcptReply | gomilter.OptNoDataReply | gomilter.OptNoUnknownReply |
	gomilter.OptNoEOHReply | gomilter.OptNoBodyReply

// dial connects to a milter and negotiates. The library keeps the
// protocol options the milter answers with as they are; only those we
// offered are kept, so that a milter cannot make us, say, send header
// values with their leading space or leave out a stage we did not offer
// to.
func (t *Txn) dial(tg target, mask gomilter.OptAction, proto gomilter.OptProtocol) (*gomilter.ClientSession, *dialer, error) {
	d := &dialer{timeout: t.c.opts.Timeout}
	cl := gomilter.NewClientWithOptions(tg.network, tg.addr, gomilter.ClientOptions{
		Dialer:       d,
		ReadTimeout:  t.c.opts.Timeout,
		WriteTimeout: t.c.opts.Timeout,
		ActionMask:   mask,
		ProtocolMask: proto,
	})
	s, err := cl.Session()
	if err != nil && d.conn != nil {
		d.conn.Close()
	}
	if err == nil {
		s.ProtocolOpts &= proto
	}
	return s, d, err
}

func (t *Txn) open(ctx context.Context, m *session, tg target, from string) *Reply {
	if err := ctx.Err(); err != nil {
		return t.abandon(m, "connect", err)
	}
	offered := actions
	s, d, err := t.dial(tg, offered, protocols)
	if errors.Is(err, gomilter.ErrUnsupportedMilterVersion) {
		// The library gives up on a milter of protocol version 2 to 5
		// when we offer a version 6 action (changing the sender) or
		// protocol option (SMFIP_SKIP, SMFIP_NR_*), instead of offering
		// less (docs/upstream/go-milter.md): ask again without them.
		offered = actions & 0x3f
		s, d, err = t.dial(tg, offered, protocols&0x7f)
	}
	if err != nil {
		return t.fail(m, "connect", err)
	}
	m.s, m.conn, m.allowed = s, d.conn, offered&s.ActionOpts
	info := t.info
	family, addr, host, name, ptr := gomilter.FamilyUnix, "", "localhost", "localhost", "localhost"
	if info.IP != nil {
		family, addr, name, ptr = gomilter.FamilyInet, info.IP.String(), cmp.Or(info.Name, "unknown"), cmp.Or(info.PTR, "unknown")
		host = cmp.Or(info.Name, "["+addr+"]")
		if info.IP.To4() == nil {
			family = gomilter.FamilyInet6
		}
	}
	steps := []struct {
		stage string
		do    func() (*gomilter.Action, error)
	}{
		{"connect", func() (*gomilter.Action, error) {
			if err := s.Macros(gomilter.CodeConn, "j", t.c.opts.Hostname, "{daemon_name}", t.c.opts.Daemon,
				"{client_addr}", addr, "{client_name}", name, "{client_ptr}", ptr, "{client_port}", strconv.Itoa(info.Port),
				"_", name+" ["+addr+"]"); err != nil {
				return nil, err
			}
			return s.Conn(host, family, uint16(info.Port), addr)
		}},
		{"helo", func() (*gomilter.Action, error) {
			if info.TLS != "" {
				if err := s.Macros(gomilter.CodeHelo, "{tls_version}", info.TLS, "{cipher}", info.Cipher); err != nil {
					return nil, err
				}
			}
			return s.Helo(info.Helo)
		}},
		{"mail", func() (*gomilter.Action, error) {
			kv := []string{"i", info.QueueID, "{mail_addr}", from}
			if info.AuthUser != "" {
				kv = append(kv, "{auth_type}", info.AuthType, "{auth_authen}", info.AuthUser)
			}
			if err := s.Macros(gomilter.CodeMail, kv...); err != nil {
				return nil, err
			}
			return s.Mail(from, nil)
		}},
	}
	for _, st := range steps {
		if m.done {
			return nil
		}
		t.stage(m)
		act, err := st.do()
		if err != nil {
			return t.fail(m, st.stage, err)
		}
		if r := t.answer(m, st.stage, act); r != nil {
			return r
		}
	}
	return nil
}

// active lists the milters still in the conversation.
func (t *Txn) active() []*session {
	var out []*session
	for _, m := range t.ms {
		if !m.done && m.s != nil {
			out = append(out, m)
		}
	}
	return out
}

// Rcpt tells each milter of a recipient; a reply refuses that recipient.
func (t *Txn) Rcpt(ctx context.Context, to string) *Reply {
	for _, m := range t.active() {
		if err := ctx.Err(); err != nil {
			return t.abandon(m, "rcpt", err)
		}
		t.stage(m)
		if err := m.s.Macros(gomilter.CodeRcpt, "{rcpt_addr}", to); err != nil {
			if r := t.fail(m, "rcpt", err); r != nil {
				return r
			}
			continue
		}
		act, err := m.s.Rcpt(to, nil)
		if err != nil {
			if r := t.fail(m, "rcpt", err); r != nil {
				return r
			}
			continue
		}
		if r := t.answer(m, "rcpt", act); r != nil {
			return r
		}
	}
	return nil
}

// Outcome is what the milters made of a message.
type Outcome struct {
	// Reply, if set, refuses the message (REJECT, TEMPFAIL, REPLYCODE,
	// or the default action of a failed milter).
	Reply *Reply
	// Discard: answer 250 and deliver nothing.
	Discard bool
	// Quarantine, if set, is why the message goes to the Junk folder.
	Quarantine string
	// Header is the header as the milters left it.
	Header msghdr.Header
	// Body, if set, replaces the body (read it from offset 0); the
	// caller closes it after delivery.
	Body *spool.Spool
	// From, if set, replaces the envelope sender ("" too: it is a
	// pointer so that "no change" differs from the null sender).
	From *string
	// Add and Del are recipients to add and remove.
	Add, Del []string
}

// Message gives the message (header h and the body read from body) to
// each milter in turn; each sees the changes of those before it.
// maxBody bounds a replaced body; spoolDir holds a large one.
func (t *Txn) Message(ctx context.Context, h msghdr.Header, body func() io.Reader, spoolDir string, maxBody int64) *Outcome {
	out := &Outcome{Header: h}
	for _, m := range t.active() {
		if err := ctx.Err(); err != nil {
			out.Reply = t.abandon(m, "data", err)
		} else {
			bodyNow := body
			if out.Body != nil {
				bodyNow = func() io.Reader { return out.Body.Reader(0) }
			}
			out.Reply = t.content(m, out, bodyNow, spoolDir, maxBody)
		}
		if out.Reply != nil {
			break
		}
	}
	out.Discard = t.discard && out.Reply == nil
	out.Quarantine = t.quarantine
	return out
}

// content runs one milter over the message and applies its changes to
// out.
func (t *Txn) content(m *session, out *Outcome, body func() io.Reader, spoolDir string, maxBody int64) *Reply {
	t.stage(m)
	for _, f := range out.Header {
		if f.Name == "" {
			// A line that is not a field (the MX refuses such a
			// header before the milters see it).
			continue
		}
		m.allow()
		act, err := m.s.HeaderField(f.Name, headerValue(f))
		if err != nil {
			return t.fail(m, "header", err)
		}
		if r := t.answer(m, "header", act); r != nil || m.done {
			return r
		}
	}
	act, err := m.s.HeaderEnd()
	if err != nil {
		return t.fail(m, "header", err)
	}
	if r := t.answer(m, "header", act); r != nil || m.done {
		return r
	}
	t.stage(m)
	br := bufio.NewReaderSize(body(), gomilter.MaxBodyChunk)
	buf := make([]byte, gomilter.MaxBodyChunk)
	for {
		n, rerr := io.ReadFull(br, buf)
		if n > 0 {
			m.allow()
			act, err := m.s.BodyChunk(buf[:n])
			if err != nil {
				return t.fail(m, "body", err)
			}
			if act.Code == gomilter.ActSkip {
				break
			}
			if r := t.answer(m, "body", act); r != nil || m.done {
				return r
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return t.abandon(m, "body", fmt.Errorf("read the spooled body: %w", rerr))
		}
	}
	t.stage(m)
	if m.conn != nil {
		// The modifications come all at once, before the final reply:
		// a new body, at most maxModifications of them.
		m.conn.next(m.conn.until, replyBudget+headerEditBudget+max(maxBody, 0), maxModifications+1)
	}
	if err := m.s.Macros(gomilter.CodeEOB, "i", t.info.QueueID); err != nil {
		return t.fail(m, "end of message", err)
	}
	mods, act, err := m.s.End()
	if err != nil {
		return t.fail(m, "end of message", err)
	}
	if act.Code == gomilter.ActContinue || act.Code == gomilter.ActAccept {
		// Changes count only with an accepting end (libmilter's rule).
		if err := t.apply(m, out, mods, spoolDir, maxBody); err != nil {
			return t.fail(m, "end of message", err)
		}
	}
	m.done = true
	return t.answer(m, "end of message", act)
}

// headerValue is a field's value as milters get it: no leading space
// (Sendmail's way without SMFIP_HDR_LEADSPC), continuation lines joined
// by LF, no final line end.
func headerValue(f msghdr.Field) string {
	_, v, _ := strings.Cut(string(f.Raw), ":")
	v = strings.TrimLeft(v, " \t")
	v = strings.TrimRight(v, "\r\n")
	return strings.ReplaceAll(v, "\r\n", "\n")
}

// needs is the negotiated action each modification requires (SMFIF_*).
var needs = map[gomilter.ModifyActCode]gomilter.OptAction{
	gomilter.ActAddHeader:    gomilter.OptAddHeader,
	gomilter.ActInsertHeader: gomilter.OptAddHeader,
	gomilter.ActChangeHeader: gomilter.OptChangeHeader,
	gomilter.ActReplBody:     gomilter.OptChangeBody,
	gomilter.ActAddRcpt:      gomilter.OptAddRcpt,
	gomilter.ActDelRcpt:      gomilter.OptRemoveRcpt,
	gomilter.ActQuarantine:   gomilter.OptQuarantine,
	gomilter.ActChangeFrom:   gomilter.OptChangeFrom,
}

// apply carries out one milter's modifications. One it did not
// negotiate is a protocol error, as in Postfix: none of its changes are
// made, and it gets the default action.
func (t *Txn) apply(m *session, out *Outcome, mods []gomilter.ModifyAction, spoolDir string, maxBody int64) error {
	if len(mods) > maxModifications {
		return fmt.Errorf("%w: %d modifications", errFlood, len(mods))
	}
	for _, mod := range mods {
		if need, ok := needs[mod.Code]; !ok || m.allowed&need == 0 {
			return fmt.Errorf("modification %q was not negotiated (actions %#x)", mod.Code, m.allowed)
		}
	}
	var body *spool.Spool
	// The header is edited in place, in a copy of its own: the caller's
	// stays as it was should this milter fail half-way.
	h := slices.Clone(out.Header)
	for _, mod := range mods {
		switch mod.Code {
		case gomilter.ActAddHeader, gomilter.ActInsertHeader, gomilter.ActChangeHeader:
			var err error
			if h, err = editHeader(h, mod); err != nil {
				if body != nil {
					body.Close()
				}
				return err
			}
		case gomilter.ActReplBody:
			if body == nil {
				body = spool.New(spoolDir, maxBody)
			}
			if _, err := body.Write(mod.Body); err != nil {
				body.Close()
				return fmt.Errorf("replaced body: %w", err)
			}
		}
	}
	out.Header = h
	for _, mod := range mods {
		switch mod.Code {
		case gomilter.ActChangeFrom:
			f := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(mod.From), "<"), ">")
			out.From = &f
		case gomilter.ActAddRcpt:
			out.Add = append(out.Add, strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(mod.Rcpt), "<"), ">"))
		case gomilter.ActDelRcpt:
			out.Del = append(out.Del, strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(mod.Rcpt), "<"), ">"))
		case gomilter.ActQuarantine:
			t.quarantine = fmt.Sprintf("milter %s: %s", m.name, mod.Reason)
		}
	}
	if body != nil {
		if out.Body != nil {
			out.Body.Close()
		}
		out.Body = body
	}
	return nil
}

// Close ends the conversation with every milter still in it.
func (t *Txn) Close() {
	for _, m := range t.ms {
		t.hangUp(m)
	}
}

// hangUp says goodbye to a milter and closes the connection. The
// library's Close leaves the connection open when its goodbye cannot be
// written (docs/upstream/go-milter.md), so it is closed here as well.
func (t *Txn) hangUp(m *session) {
	if m.conn != nil {
		// Quitting must not wait long on a milter that stopped reading.
		m.conn.until = time.Now().Add(time.Second)
	}
	if m.s != nil {
		m.s.Close()
		m.s = nil
	}
	if m.conn != nil {
		m.conn.Close()
		m.conn = nil
	}
}
