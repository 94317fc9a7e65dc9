package imap

import (
	"fmt"
	"io"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"mailroom/imap/internal/wire"
)

// The commands: each reads its arguments, runs the session's method and
// writes the responses. The session code (select.go, fetch.go, ...) knows
// nothing of the wire.

type command struct {
	states []connState
	uid    bool // has a UID form (RFC 9051 §6.4.9)
	run    func(c *conn, tag string, uid bool) error
}

var (
	anyState = []connState{stateNotAuth, stateAuth, stateSelected}
	notAuth  = []connState{stateNotAuth}
	authed   = []connState{stateAuth} // or selected
	selected = []connState{stateSelected}
)

var commands = map[string]command{
	"CAPABILITY":   {states: anyState, run: (*conn).capability},
	"NOOP":         {states: anyState, run: (*conn).noop},
	"LOGOUT":       {states: anyState, run: (*conn).logout},
	"ID":           {states: anyState, run: (*conn).id},
	"STARTTLS":     {states: notAuth, run: (*conn).startTLS},
	"AUTHENTICATE": {states: notAuth, run: (*conn).authenticate},
	"LOGIN":        {states: notAuth, run: (*conn).login},
	"ENABLE":       {states: authed, run: (*conn).enable},
	"SELECT":       {states: authed, run: (*conn).selectCmd},
	"EXAMINE":      {states: authed, run: (*conn).selectCmd},
	"CREATE":       {states: authed, run: (*conn).create},
	"DELETE":       {states: authed, run: (*conn).oneMailbox},
	"RENAME":       {states: authed, run: (*conn).rename},
	"SUBSCRIBE":    {states: authed, run: (*conn).oneMailbox},
	"UNSUBSCRIBE":  {states: authed, run: (*conn).oneMailbox},
	"LIST":         {states: authed, run: (*conn).list},
	"LSUB":         {states: authed, run: (*conn).lsub},
	"NAMESPACE":    {states: authed, run: (*conn).namespace},
	"STATUS":       {states: authed, run: (*conn).status},
	"APPEND":       {states: authed, run: (*conn).appendCmd},
	"IDLE":         {states: authed, run: (*conn).idle},
	"CHECK":        {states: selected, run: (*conn).noop},
	"CLOSE":        {states: selected, run: (*conn).closeCmd},
	"UNSELECT":     {states: selected, run: (*conn).closeCmd},
	"EXPUNGE":      {states: selected, uid: true, run: (*conn).expunge},
	"SEARCH":       {states: selected, uid: true, run: (*conn).search},
	"FETCH":        {states: selected, uid: true, run: (*conn).fetch},
	"STORE":        {states: selected, uid: true, run: (*conn).store},
	"COPY":         {states: selected, uid: true, run: (*conn).copyCmd},
	"MOVE":         {states: selected, uid: true, run: (*conn).move},
}

func (c *conn) done(tag string) error {
	return c.ok(tag, "", c.cmdName+" completed")
}

func (c *conn) noop(tag string, _ bool) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	return c.done(tag)
}

func (c *conn) logout(tag string, _ bool) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	c.byeOnce.Do(func() { c.enc.Status("*", goimap.StatusResponseTypeBye, "", "Logging out") })
	c.enc.Status(tag, goimap.StatusResponseTypeOK, "", "LOGOUT completed")
	c.state = stateLogout
	return c.enc.Flush()
}

// id answers ID (RFC 2971) with the server's name; what the client says
// of itself is logged at debug level.
func (c *conn) id(tag string, _ bool) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	var fields []string
	list, err := c.dec.List(true, func() error {
		s, _, err := c.dec.NString()
		if len(fields) < 60 {
			fields = append(fields, truncate(s, 64))
		}
		return err
	})
	if err != nil {
		return err
	}
	if !list {
		if _, ok, err := c.dec.NString(); err != nil || ok {
			if err == nil {
				err = &wire.SyntaxError{Reason: "Expected a list or NIL"}
			}
			return err
		}
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if len(fields) > 0 {
		c.ss.log.Debug("client id", "id", strings.Join(fields, " "))
	}
	c.enc.Atom(`* ID ("name" "mailroom")`).CRLF()
	return c.done(tag)
}

func (c *conn) enable(tag string, _ bool) error {
	var enabled []string
	for {
		if end, err := c.dec.AtEnd(); err != nil || end {
			if err != nil {
				return err
			}
			break
		}
		if err := c.dec.SP(); err != nil {
			return err
		}
		a, err := c.dec.Atom()
		if err != nil {
			return err
		}
		switch cp := strings.ToUpper(a); cp {
		case "IMAP4REV2":
			c.rev2 = true
			enabled = append(enabled, string(goimap.CapIMAP4rev2))
			fallthrough // RFC 9051: UTF-8 names and strings
		case "UTF8=ACCEPT":
			c.dec.UTF8, c.enc.UTF8 = true, true
			if cp == "UTF8=ACCEPT" {
				enabled = append(enabled, string(goimap.CapUTF8Accept))
			}
		}
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	c.enc.Atom("* ENABLED")
	for _, e := range enabled {
		c.enc.SP().Atom(e)
	}
	c.enc.CRLF()
	return c.done(tag)
}

func (c *conn) selectCmd(tag string, _ bool) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	name, err := c.dec.Mailbox()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	readOnly := c.cmdName == "EXAMINE"
	if c.state == stateSelected {
		c.ss.unselect()
		c.state = stateAuth
		// RFC 9051 §6.3.2: the previous mailbox is closed.
		c.enc.Status("*", goimap.StatusResponseTypeOK, "CLOSED", "Previous mailbox is now closed")
	}
	data, err := c.ss.Select(name, &goimap.SelectOptions{ReadOnly: readOnly})
	if err != nil {
		return err
	}
	e := c.enc
	e.Atom("* ").Number(data.NumMessages).Atom(" EXISTS").CRLF()
	if !c.rev2 {
		e.Atom("* ").Number(data.NumRecent).Atom(" RECENT").CRLF()
		if data.FirstUnseenSeqNum != 0 {
			e.Status("*", goimap.StatusResponseTypeOK, fmt.Sprintf("UNSEEN %d", data.FirstUnseenSeqNum), "First unseen message")
		}
	}
	e.Status("*", goimap.StatusResponseTypeOK, fmt.Sprintf("UIDVALIDITY %d", data.UIDValidity), "UIDs valid")
	e.Status("*", goimap.StatusResponseTypeOK, fmt.Sprintf("UIDNEXT %d", data.UIDNext), "Predicted next UID")
	e.Atom("* FLAGS ").Flags(data.Flags).CRLF()
	e.Atom("* OK [PERMANENTFLAGS ").Flags(data.PermanentFlags).Atom("] Permanent flags").CRLF()
	c.state = stateSelected
	code := "READ-WRITE"
	if readOnly {
		code = "READ-ONLY"
	}
	e.Status(tag, goimap.StatusResponseTypeOK, code, c.cmdName+" completed")
	return e.Err()
}

func (c *conn) create(tag string, _ bool) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	name, err := c.dec.Mailbox()
	if err != nil {
		return err
	}
	var opts goimap.CreateOptions
	if end, err := c.dec.AtEnd(); err != nil {
		return err
	} else if !end {
		// RFC 6154 §3: CREATE name (USE (attrs)).
		if err := c.dec.SP(); err != nil {
			return err
		}
		err := c.dec.ExpectList(false, func() error {
			a, err := c.dec.Atom()
			if err != nil {
				return err
			}
			if !strings.EqualFold(a, "USE") {
				return &wire.SyntaxError{Reason: "Unknown CREATE parameter " + truncate(a, 40)}
			}
			if err := c.dec.SP(); err != nil {
				return err
			}
			return c.dec.ExpectList(true, func() error {
				f, err := c.dec.Flag()
				opts.SpecialUse = append(opts.SpecialUse, goimap.MailboxAttr(f))
				return err
			})
		})
		if err != nil {
			return err
		}
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if err := c.ss.Create(name, &opts); err != nil {
		return err
	}
	return c.done(tag)
}

// oneMailbox runs DELETE, SUBSCRIBE and UNSUBSCRIBE.
func (c *conn) oneMailbox(tag string, _ bool) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	name, err := c.dec.Mailbox()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	switch c.cmdName {
	case "DELETE":
		err = c.ss.Delete(name)
	case "SUBSCRIBE":
		err = c.ss.Subscribe(name)
	default:
		err = c.ss.Unsubscribe(name)
	}
	if err != nil {
		return err
	}
	return c.done(tag)
}

func (c *conn) rename(tag string, _ bool) error {
	var names [2]string
	for i := range names {
		if err := c.dec.SP(); err != nil {
			return err
		}
		n, err := c.dec.Mailbox()
		if err != nil {
			return err
		}
		names[i] = n
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if err := c.ss.Rename(names[0], names[1], &goimap.RenameOptions{}); err != nil {
		return err
	}
	return c.done(tag)
}

func (c *conn) list(tag string, _ bool) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	ref, patterns, opts, err := c.dec.ListArgs()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if err := c.ss.List(&listWriter{c: c, options: opts}, ref, patterns, opts); err != nil {
		return err
	}
	return c.done(tag)
}

func (c *conn) lsub(tag string, _ bool) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	ref, err := c.dec.ListMailbox()
	if err != nil {
		return err
	}
	if err := c.dec.SP(); err != nil {
		return err
	}
	pattern, err := c.dec.ListMailbox()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	var patterns []string
	if pattern != "" {
		patterns = []string{pattern}
	}
	opts := &goimap.ListOptions{SelectSubscribed: true}
	if err := c.ss.List(&listWriter{c: c, options: opts, lsub: true}, ref, patterns, opts); err != nil {
		return err
	}
	return c.done(tag)
}

func (c *conn) namespace(tag string, _ bool) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	// RFC 2342: one personal namespace, no others.
	c.enc.Atom(`* NAMESPACE (("" "`).Atom(string(delim)).Atom(`")) NIL NIL`).CRLF()
	return c.done(tag)
}

func (c *conn) status(tag string, _ bool) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	name, err := c.dec.Mailbox()
	if err != nil {
		return err
	}
	if err := c.dec.SP(); err != nil {
		return err
	}
	items, err := c.dec.StatusItems()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	data, err := c.ss.Status(name, items)
	if err != nil {
		return err
	}
	c.writeStatus(data, items)
	return c.done(tag)
}

// writeStatus writes a STATUS response with the items asked for.
func (c *conn) writeStatus(d *goimap.StatusData, o *goimap.StatusOptions) {
	e := c.enc
	e.Atom("* STATUS ").Mailbox(d.Mailbox).Atom(" (")
	sep := ""
	item := func(name string) *wire.Encoder {
		e.Atom(sep).Atom(name).SP()
		sep = " "
		return e
	}
	if o.NumMessages {
		item("MESSAGES").Number(*d.NumMessages)
	}
	if o.NumRecent {
		item("RECENT").Number(*d.NumRecent)
	}
	if o.UIDNext {
		item("UIDNEXT").Number(uint32(d.UIDNext))
	}
	if o.UIDValidity {
		item("UIDVALIDITY").Number(d.UIDValidity)
	}
	if o.NumUnseen {
		item("UNSEEN").Number(*d.NumUnseen)
	}
	if o.NumDeleted {
		item("DELETED").Number(*d.NumDeleted)
	}
	if o.Size {
		item("SIZE").Number64(*d.Size)
	}
	if o.AppendLimit {
		item("APPENDLIMIT").Number(*d.AppendLimit)
	}
	e.Byte(')').CRLF()
}

// appendCmd runs APPEND (RFC 9051 §6.3.12; BINARY's literal8, RFC 3516
// §4.4; UTF8's form, RFC 6855 §4). The message streams from the client
// to the store.
func (c *conn) appendCmd(tag string, _ bool) error {
	d := c.dec
	if err := d.SP(); err != nil {
		return err
	}
	name, err := d.Mailbox()
	if err != nil {
		return err
	}
	if err := d.SP(); err != nil {
		return err
	}
	var opts goimap.AppendOptions
	if b, err := d.Peek(); err != nil {
		return err
	} else if b == '(' {
		if opts.Flags, err = d.FlagList(); err != nil {
			return err
		}
		if err := d.SP(); err != nil {
			return err
		}
	}
	if b, err := d.Peek(); err != nil {
		return err
	} else if b == '"' {
		if opts.Time, err = d.DateTime(); err != nil {
			return err
		}
		if err := d.SP(); err != nil {
			return err
		}
	}
	utf8Form := false
	if b, err := d.Peek(); err != nil {
		return err
	} else if b == 'U' || b == 'u' {
		a, err := d.Atom()
		if err != nil || !strings.EqualFold(a, "UTF8") {
			return &wire.SyntaxError{Reason: "Expected the message as a literal"}
		}
		if err := d.SP(); err != nil {
			return err
		}
		if err := d.Expect('(', "( after UTF8"); err != nil {
			return err
		}
		utf8Form = true
	}
	limit := int64(c.srv.opts.AppendLimit)
	d.Literal = func(size int64, sync, binary bool) error {
		if size > limit {
			return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeTooBig, Text: fmt.Sprintf("Messages are limited to %d bytes", limit)}
		}
		return c.continueLiteral(sync)
	}
	r, size, binary, err := d.LiteralReader(true)
	d.Literal = c.acceptLiteral
	if err != nil {
		return err
	}
	c.nc.SetReadDeadline(time.Now().Add(literalTimeout))
	data, appendErr := c.ss.Append(name, r, size, binary, &opts)
	if _, err := io.Copy(io.Discard, r); err != nil {
		return errConnGone
	}
	if utf8Form {
		if err := d.Expect(')', ") after the message"); err != nil {
			return err
		}
	}
	if err := d.CRLF(); err != nil {
		return err
	}
	if appendErr != nil {
		return appendErr
	}
	return c.ok(tag, fmt.Sprintf("APPENDUID %d %d", data.UIDValidity, data.UID), "APPEND completed")
}

// idle runs IDLE (RFC 2177): the session reports changes from its own
// goroutine, which takes wmu for each, until the client sends DONE.
func (c *conn) idle(tag string, _ bool) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	c.enc.Atom("+ idling").CRLF()
	if err := c.enc.Flush(); err != nil {
		return err
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	w := &updateWriter{c: c, locked: false}
	// Idling is not a command in progress: a shutdown says BYE at once.
	c.wmu.Unlock()
	c.ss.cc.End()
	go func() {
		defer func() {
			if v := recover(); v != nil {
				c.srv.opts.Panics.Record(c.ss.log, "imap IDLE", v)
				done <- fmt.Errorf("panic in IDLE: %v", v)
			}
		}()
		done <- c.ss.Idle(w, stop)
	}()
	c.nc.SetReadDeadline(time.Now().Add(c.srv.opts.IdleTimeout))
	line, err := c.dec.ReadLine(100)
	close(stop)
	ierr := <-done
	c.ss.cc.Begin()
	c.wmu.Lock()
	if err != nil {
		if isIOError(err) {
			var ne interface{ Timeout() bool }
			if asTimeout(err, &ne) {
				c.ss.log.Info("idle for too long; logging out")
				c.byeLocked("Autologout; idle for too long")
			}
			return errConnGone
		}
		return err
	}
	if ierr != nil {
		return ierr
	}
	if !strings.EqualFold(line, "DONE") {
		return &goimap.Error{Type: goimap.StatusResponseTypeBad, Text: "Expected DONE to end IDLE"}
	}
	return c.done(tag)
}

func (c *conn) closeCmd(tag string, _ bool) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if c.cmdName == "CLOSE" {
		if err := c.ss.closeFolder(); err != nil {
			return err
		}
	}
	c.ss.unselect()
	c.state = stateAuth
	return c.done(tag)
}

func (c *conn) expunge(tag string, uid bool) error {
	var uids *goimap.UIDSet
	if uid {
		if err := c.dec.SP(); err != nil {
			return err
		}
		set, err := c.dec.NumSet(true)
		if err != nil {
			return err
		}
		u := set.(goimap.UIDSet)
		uids = &u
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if err := c.ss.Expunge(c.updates(), uids); err != nil {
		return err
	}
	return c.done(tag)
}

func (c *conn) search(tag string, uid bool) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	args, err := c.dec.Search()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	switch strings.ToUpper(args.Charset) {
	case "", "US-ASCII", "UTF-8":
	default:
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: "BADCHARSET (US-ASCII UTF-8)", Text: "Only US-ASCII and UTF-8 searches are supported"}
	}
	data, err := c.ss.Search(uid, args.Criteria, args.Options)
	if err != nil {
		return err
	}
	e := c.enc
	if c.rev2 || args.Extended {
		// RFC 4731 §3.1.
		e.Atom("* ESEARCH (TAG ").Quoted(tag).Byte(')')
		if uid {
			e.Atom(" UID")
		}
		o := args.Options
		if o.ReturnMin && data.Min > 0 {
			e.Atom(" MIN ").Number(data.Min)
		}
		if o.ReturnMax && data.Max > 0 {
			e.Atom(" MAX ").Number(data.Max)
		}
		if o.ReturnAll && data.Count > 0 {
			e.Atom(" ALL ").NumSet(data.All)
		}
		if o.ReturnCount {
			e.Atom(" COUNT ").Number(data.Count)
		}
		e.CRLF()
	} else {
		e.Atom("* SEARCH")
		for _, n := range data.hits {
			e.SP().Number(n)
		}
		e.CRLF()
	}
	return c.done(tag)
}

func (c *conn) fetch(tag string, uid bool) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	set, err := c.dec.NumSet(uid)
	if err != nil {
		return err
	}
	if err := c.dec.SP(); err != nil {
		return err
	}
	opts, names, err := c.dec.FetchItems()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	opts.UID = opts.UID || uid
	if err := c.ss.Fetch(&fetchWriter{c: c, names: names}, set, opts); err != nil {
		return err
	}
	return c.done(tag)
}

func (c *conn) store(tag string, uid bool) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	set, err := c.dec.NumSet(uid)
	if err != nil {
		return err
	}
	if err := c.dec.SP(); err != nil {
		return err
	}
	flags, err := c.dec.StoreFlags()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if err := c.ss.Store(&fetchWriter{c: c, names: &wire.FetchNames{}}, set, flags); err != nil {
		return err
	}
	return c.done(tag)
}

// setAndMailbox reads COPY's and MOVE's arguments.
func (c *conn) setAndMailbox(uid bool) (goimap.NumSet, string, error) {
	if err := c.dec.SP(); err != nil {
		return nil, "", err
	}
	set, err := c.dec.NumSet(uid)
	if err != nil {
		return nil, "", err
	}
	if err := c.dec.SP(); err != nil {
		return nil, "", err
	}
	name, err := c.dec.Mailbox()
	if err != nil {
		return nil, "", err
	}
	return set, name, c.dec.CRLF()
}

func (c *conn) copyCmd(tag string, uid bool) error {
	set, name, err := c.setAndMailbox(uid)
	if err != nil {
		return err
	}
	data, err := c.ss.Copy(set, name)
	if err != nil {
		return err
	}
	code := ""
	if data != nil {
		code = copyUIDCode(data)
	}
	return c.ok(tag, code, c.cmdName+" completed")
}

// copyUIDCode is COPYUID's response code (RFC 4315 §3).
func copyUIDCode(d *goimap.CopyData) string {
	return fmt.Sprintf("COPYUID %d %s %s", d.UIDValidity, d.SourceUIDs.String(), d.DestUIDs.String())
}

func (c *conn) move(tag string, uid bool) error {
	set, name, err := c.setAndMailbox(uid)
	if err != nil {
		return err
	}
	if err := c.ss.Move(c.updates(), set, name); err != nil {
		return err
	}
	return c.done(tag)
}

func asTimeout(err error, t *interface{ Timeout() bool }) bool {
	for err != nil {
		if te, ok := err.(interface{ Timeout() bool }); ok && te.Timeout() {
			*t = te
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}
