package sieve

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// errStop and errReturn end a script (stop, RFC 5228 §3.3) or an
// included one (return, RFC 6609 §3.4); they are not failures.
var (
	errStop   = errors.New("stop")
	errReturn = errors.New("return")
)

// Run runs the script on a message. See RunSequence.
func (s *Script) Run(ctx context.Context, m *Message, opts RunOptions) (*Result, error) {
	return RunSequence(ctx, []*Script{s}, m, opts)
}

// RunSequence runs scripts one after the other on a message, as
// Pigeonhole runs sieve_before, the user's and sieve_after scripts: the
// next runs only while the implicit keep is still in force, and their
// actions add up. The result is never nil: when a script fails (a limit
// reached, a conflict of actions, an error of the Environment), its own
// actions are dropped, the message is kept (implicit keep into INBOX,
// together with what earlier scripts did), and the error, an *Error
// naming the script, line and column, says why.
func RunSequence(ctx context.Context, scripts []*Script, m *Message, opts RunOptions) (*Result, error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Location == nil {
		opts.Location = time.Local
	}
	total := newAccum()
	var flags string
	for _, s := range scripts {
		if !total.keep {
			break
		}
		r := &run{ctx: ctx, msg: m, opts: opts, limits: s.limits, acc: total.clone()}
		if err := r.script(s); err != nil {
			total.keep = true
			return total.result(""), err
		}
		total, flags = r.acc, r.flags
	}
	return total.result(flags), nil
}

// run is the state of one script's run.
type run struct {
	ctx       context.Context
	msg       *Message
	opts      RunOptions
	limits    Limits
	acc       *accum
	cur       *Script
	locals    []string
	globals   map[string]string
	matchVars []string
	flags     string // imap4flags' internal variable
	cost      int64
	regexes   map[string]*compiledRegex
	// scratch and addrScratch are reused by tests for the values they
	// compare, which no test keeps beyond its own evaluation.
	scratch     []string
	addrScratch []mailAddr
	once        map[Dep]bool
	depth       int
}

// The costs of the steps that dominate a run, in units of about a
// nanosecond of CPU time each, measured by TestHostile's scripts: an
// octet compared costs one.
const (
	costGlobStep  = 10 // one step of a :matches pattern
	costRegexStep = 10 // one instruction of a regex program on one octet
	// costRegexCompile is one instruction of a regex program compiled
	// while the script runs (a key with variables).
	costRegexCompile = 10000
)

// charge counts work against Limits.MaxCost, and notices a cancelled
// context now and then.
func (r *run) charge(n int) error {
	before := r.cost
	r.cost += int64(n) + 1
	if r.cost > r.limits.MaxCost {
		return errors.New("the script took too long to run (cost limit reached)")
	}
	if before>>16 != r.cost>>16 {
		if err := r.ctx.Err(); err != nil {
			return fmt.Errorf("run interrupted: %w", err)
		}
	}
	return nil
}

// script runs s (the main script or an included one) in its own scope.
func (r *run) script(s *Script) error {
	saved, savedLocals := r.cur, r.locals
	r.cur, r.locals = s, make([]string, s.nlocals)
	defer func() { r.cur, r.locals = saved, savedLocals }()
	err := r.block(s.cmds)
	if errors.Is(err, errStop) && r.depth > 0 {
		return err // stop ends every script, the including ones too
	}
	if errors.Is(err, errStop) || errors.Is(err, errReturn) {
		return nil
	}
	return err
}

func (r *run) block(b block) error {
	for _, st := range b {
		if err := r.charge(0); err != nil {
			return r.at(st.pos, err)
		}
		if err := st.cmd.exec(r); err != nil {
			return r.at(st.pos, err)
		}
	}
	return nil
}

// at gives a run-time error its place, unless it has one.
func (r *run) at(p Pos, err error) error {
	if errors.Is(err, errStop) || errors.Is(err, errReturn) {
		return err
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Script: r.cur.name, Pos: p, Msg: err.Error(), err: err}
}

func (c *ifCmd) exec(r *run) error {
	for _, b := range c.branches {
		ok, err := b.test.eval(r)
		if err != nil {
			return err
		}
		if ok {
			return r.block(b.block)
		}
	}
	if c.hasElse {
		return r.block(c.elseBlock)
	}
	return nil
}

func (stopCmd) exec(*run) error   { return errStop }
func (returnCmd) exec(*run) error { return errReturn }

func (discardCmd) exec(r *run) error { return r.acc.add(Discard{}, r.limits) }

func (k keepCmd) exec(r *run) error {
	flags, err := r.flagList(k.flags)
	if err != nil {
		return err
	}
	return r.acc.add(Keep{Flags: flags}, r.limits)
}

func (f fileintoCmd) exec(r *run) error {
	flags, err := r.flagList(f.flags)
	if err != nil {
		return err
	}
	name := r.expand(f.mailbox)
	if name == "" {
		return errors.New("fileinto: the mailbox name is empty")
	}
	at := Origin{Script: r.cur.name, Pos: f.pos}
	return r.acc.add(FileInto{Mailbox: name, Create: f.create, Copy: f.copy, Flags: flags, At: at}, r.limits)
}

func (c redirectCmd) exec(r *run) error {
	addr, ok := parseRedirectAddress(r.expand(c.addr))
	if !ok {
		return fmt.Errorf("redirect: invalid address %q", r.expand(c.addr))
	}
	if r.acc.redirects >= r.limits.MaxRedirects {
		return fmt.Errorf("redirect: more than %d redirects", r.limits.MaxRedirects)
	}
	return r.acc.add(Redirect{Address: addr, Copy: c.copy}, r.limits)
}

func (c rejectCmd) exec(r *run) error {
	return r.acc.add(Reject{Reason: r.expand(c.reason), Extended: c.extended}, r.limits)
}

func (c includeCmd) exec(r *run) error {
	if c.once {
		if r.once[c.dep] {
			return nil
		}
		if r.once == nil {
			r.once = map[Dep]bool{}
		}
		r.once[c.dep] = true
	}
	if r.depth+1 > r.limits.MaxIncludeDepth {
		return fmt.Errorf("includes nested deeper than %d", r.limits.MaxIncludeDepth)
	}
	r.depth++
	defer func() { r.depth-- }()
	err := r.script(c.script)
	var e *Error
	if errors.As(err, &e) {
		// r.cur is the including script again.
		e.Via = append([]Origin{{Script: r.cur.name, Pos: c.pos}}, e.Via...)
	}
	return err
}

func (c setCmd) exec(r *run) error {
	v := r.expand(c.val)
	if err := r.charge(len(v)); err != nil {
		return err
	}
	for _, m := range c.mods {
		v = applyModifier(m, v)
	}
	r.setVar(c.v, v)
	return nil
}

func (c vacationCmd) exec(r *run) error {
	v := Vacation{Period: c.period, Reason: r.expand(c.reason), MIME: c.mime}
	if c.subject != nil {
		v.Subject = r.expand(*c.subject)
	}
	if c.from != nil {
		v.From = r.expand(*c.from)
	}
	for _, a := range c.addresses {
		v.Addresses = append(v.Addresses, r.expand(a))
	}
	if c.handle != nil {
		v.Handle = r.expand(*c.handle)
	} else {
		// As Pigeonhole's default: the arguments that make the reply,
		// so that a changed message is sent again.
		mime := "<NO-MIME>"
		if c.mime {
			mime = "<MIME>"
		}
		subject, from := "<default-subject>", "<default-from>"
		if c.subject != nil {
			subject = v.Subject
		}
		if c.from != nil {
			from = v.From
		}
		v.Handle = v.Reason + subject + from + mime
	}
	return r.acc.add(v, r.limits)
}

// expand returns a string with its variables replaced (RFC 5229 §3),
// truncated at 16 times Limits.MaxVariableSize.
func (r *run) expand(s str) string {
	if s.parts == nil {
		return s.lit
	}
	max := 16 * r.limits.MaxVariableSize
	var b strings.Builder
	// The work is counted at the next charge.
	defer func() { r.cost += int64(b.Len()) }()
	for _, p := range s.parts {
		if !p.isRef {
			b.WriteString(p.lit)
		} else {
			b.WriteString(r.getVar(p.ref))
		}
		if b.Len() > max {
			return truncateUTF8(b.String(), max)
		}
	}
	return b.String()
}

func (r *run) getVar(v varRef) string {
	switch v.kind {
	case refLocal:
		return r.locals[v.idx]
	case refGlobal:
		return r.globals[v.name]
	}
	if v.idx < len(r.matchVars) {
		return r.matchVars[v.idx]
	}
	return ""
}

func (r *run) setVar(v varRef, s string) {
	s = truncateUTF8(s, r.limits.MaxVariableSize)
	switch v.kind {
	case refLocal:
		r.locals[v.idx] = s
	case refGlobal:
		if r.globals == nil {
			r.globals = map[string]string{}
		}
		r.globals[v.name] = s
	}
}

// truncateUTF8 cuts s to at most max octets without splitting a
// character.
func truncateUTF8(s string, max int) string {
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && s[i]&0xc0 == 0x80 {
		i--
	}
	return s[:i]
}

// applyModifier is one modifier of set (RFC 5229 §4.1).
func applyModifier(m modifier, v string) string {
	switch m {
	case modLower:
		return strings.ToLower(v)
	case modUpper:
		return strings.ToUpper(v)
	case modLowerFirst, modUpperFirst:
		if v == "" {
			return v
		}
		_, n := utf8.DecodeRuneInString(v)
		first := v[:n]
		if m == modLowerFirst {
			return strings.ToLower(first) + v[len(first):]
		}
		return strings.ToUpper(first) + v[len(first):]
	case modQuoteWildcard:
		var b strings.Builder
		for _, c := range v {
			if c == '*' || c == '?' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteRune(c)
		}
		return b.String()
	case modQuoteRegex:
		return regexp.QuoteMeta(v)
	case modLength:
		return fmt.Sprint(len([]rune(v)))
	}
	return v
}
