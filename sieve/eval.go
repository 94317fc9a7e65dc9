package sieve

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

func (trueTest) eval(*run) (bool, error)  { return true, nil }
func (falseTest) eval(*run) (bool, error) { return false, nil }

func (t notTest) eval(r *run) (bool, error) {
	ok, err := t.t.eval(r)
	return !ok, err
}

func (t allofTest) eval(r *run) (bool, error) {
	for _, x := range t.ts {
		if err := r.charge(0); err != nil {
			return false, err
		}
		ok, err := x.eval(r)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

func (t anyofTest) eval(r *run) (bool, error) {
	for _, x := range t.ts {
		if err := r.charge(0); err != nil {
			return false, err
		}
		ok, err := x.eval(r)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

func (t sizeTest) eval(r *run) (bool, error) {
	size := uint64(r.msg.Size())
	if t.over {
		return size > t.limit, nil
	}
	return size < t.limit, nil
}

func (t existsTest) eval(r *run) (bool, error) {
	for _, n := range t.names {
		if !r.msg.has(r.expand(n)) {
			return false, nil
		}
	}
	return true, nil
}

func (t headerTest) eval(r *run) (bool, error) {
	vals := r.scratch[:0]
	for _, n := range t.names {
		vals = r.msg.values(r.expand(n), vals)
	}
	r.scratch = vals
	return r.match(&t.m, vals)
}

func (t addressTest) eval(r *run) (bool, error) {
	addrs := r.addrScratch[:0]
	for _, n := range t.names {
		addrs = r.msg.addresses(r.expand(n), addrs)
	}
	r.addrScratch = addrs
	vals := r.scratch[:0]
	defer func() { r.scratch = vals }()
	for _, a := range addrs {
		if v, ok := a.part(t.part, r.cur.sep); ok {
			vals = append(vals, v)
		}
	}
	return r.match(&t.m, vals)
}

// eval compares the envelope (RFC 5228 §5.4). The null sender is the
// empty string, whatever the address part.
func (t envelopeTest) eval(r *run) (bool, error) {
	var vals []string
	for _, p := range t.parts {
		var addr string
		switch strings.ToLower(r.expand(p)) {
		case "from":
			addr = r.opts.Envelope.From
		case "to":
			addr = r.opts.Envelope.To
		default:
			continue
		}
		if addr == "" {
			vals = append(vals, "")
			continue
		}
		if v, ok := splitAddrSpec(addr).part(t.part, r.cur.sep); ok {
			vals = append(vals, v)
		}
	}
	return r.match(&t.m, vals)
}

func (t stringTest) eval(r *run) (bool, error) {
	vals := make([]string, 0, len(t.source))
	for _, s := range t.source {
		v := r.expand(s)
		// RFC 5229 §5: for :count, empty strings are not counted.
		if t.m.typ == mCount && v == "" {
			continue
		}
		vals = append(vals, v)
	}
	return r.match(&t.m, vals)
}

func (t bodyTest) eval(r *run) (bool, error) {
	vals := t.values(r)
	return r.match(&t.m, vals)
}

func (t bodyTest) values(r *run) []string { return r.bodyValues(t) }

func (t dateTest) eval(r *run) (bool, error) {
	var times []time.Time
	loc := r.opts.Location
	if t.zone != nil {
		if z, ok := parseZone(r.expand(*t.zone)); ok {
			loc = z
		}
	}
	if t.current {
		times = append(times, r.opts.Now.In(loc))
	} else {
		// The first field only (there is no index extension).
		if vals := r.msg.values(r.expand(t.header), nil); len(vals) > 0 {
			// RFC 5260 §4: a date that does not parse yields no value.
			if d, ok := parseDate(vals[0]); ok {
				if !t.orig {
					d = d.In(loc)
				}
				times = append(times, d)
			}
		}
	}
	part := r.expand(t.part)
	vals := make([]string, 0, len(times))
	for _, d := range times {
		if v, ok := datePart(d, part); ok {
			vals = append(vals, v)
		}
	}
	return r.match(&t.m, vals)
}

func (t hasflagTest) eval(r *run) (bool, error) {
	var flags []string
	if len(t.vars) == 0 {
		flags = parseFlags(nil, r.flags)
	}
	for _, v := range t.vars {
		flags = parseFlags(flags, r.getVar(v))
	}
	m := t.m
	if m.typ != mCount {
		// A key may hold several flags (RFC 5232 §4): each is one key.
		var keys []str
		for _, k := range m.keys {
			for _, f := range parseFlags(nil, r.expand(k)) {
				keys = append(keys, str{lit: f})
			}
		}
		m.keys = keys
		m.res = make([]*compiledRegex, len(keys))
		m.globs = make([][]globItem, len(keys))
	}
	return r.match(&m, flags)
}

func (t mailboxExistsTest) eval(r *run) (bool, error) {
	if r.opts.Env == nil {
		return false, nil
	}
	for _, n := range t.names {
		ok, err := r.opts.Env.MailboxExists(r.ctx, r.expand(n))
		if err != nil {
			return false, fmt.Errorf("mailboxexists: %w", err)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// eval checks the duplicate tracking (RFC 7352 §3). The identifier is
// recorded (Result.Duplicates) only if the delivery succeeds; within
// one run, a second test of the same identifier sees the first.
func (t duplicateTest) eval(r *run) (bool, error) {
	var id string
	switch {
	case t.uniqueID != nil:
		id = r.expand(*t.uniqueID)
	default:
		name := "message-id"
		if t.header != nil {
			name = r.expand(*t.header)
		}
		v, ok := r.msg.first(name)
		if !ok {
			return false, nil
		}
		id = v
	}
	if id == "" {
		return false, nil
	}
	// The id is whatever a header or variable holds (60 KiB is a valid
	// header): it is remembered by its hash, of fixed size, as Pigeonhole
	// does, so that no key is beyond what the memory can store.
	sum := sha256.Sum256([]byte("h=" + r.expand(t.handle) + "\x00id=" + id))
	key := hex.EncodeToString(sum[:])
	seen := r.acc.dupKeys[key]
	if !seen && r.opts.Env != nil {
		var err error
		if seen, err = r.opts.Env.Duplicate(r.ctx, key); err != nil {
			return false, fmt.Errorf("duplicate: %w", err)
		}
	}
	if !seen || t.last {
		if !r.acc.dupKeys[key] {
			if r.acc.dupKeys == nil {
				r.acc.dupKeys = map[string]bool{}
			}
			r.acc.dupKeys[key] = true
			r.acc.dups = append(r.acc.dups, DuplicateMark{Key: key, Period: t.seconds})
		}
	}
	return seen, nil
}

// match compares values with the keys (RFC 5228 §2.7): true if any value
// matches any key. A successful :matches or :regex sets the match
// variables (RFC 5229 §3.2).
func (r *run) match(m *matcher, vals []string) (bool, error) {
	if m.typ == mCount {
		n := strconv.Itoa(len(vals))
		for _, k := range m.keys {
			if m.rel.holds(m.cmp.order(n, r.expand(k))) {
				return true, nil
			}
		}
		return false, nil
	}
	for _, v := range vals {
		for i, k := range m.keys {
			key := r.expand(k)
			if err := r.charge(len(v) + len(key)); err != nil {
				return false, err
			}
			ok, err := r.matchOne(m, i, v, key)
			if err != nil || ok {
				return ok, err
			}
		}
	}
	return false, nil
}

func (r *run) matchOne(m *matcher, i int, v, key string) (bool, error) {
	switch m.typ {
	case mIs:
		return m.cmp.equal(v, key), nil
	case mContains:
		return m.cmp.contains(v, key), nil
	case mValue:
		return m.rel.holds(m.cmp.order(v, key)), nil
	case mMatches:
		var caps *[]string
		if r.cur.vars {
			caps = &[]string{}
		}
		var steps int64
		items := m.globs[i]
		if items == nil {
			items = parseGlob(key)
		}
		ok := glob(items, v, m.cmp == cmpCasemap, caps, &steps)
		if err := r.charge(int(steps) * costGlobStep); err != nil {
			return false, err
		}
		if ok && caps != nil {
			r.matchVars = *caps
		}
		return ok, nil
	case mRegex:
		re := m.res[i]
		if re == nil {
			var err error
			if re, err = r.regex(key, m.cmp == cmpCasemap); err != nil {
				return false, err
			}
		}
		// Go's regexp runs in time linear in the text, times the size
		// of the pattern's program.
		if err := r.charge(len(v) * re.insts * costRegexStep); err != nil {
			return false, err
		}
		if !r.cur.vars {
			return re.re.MatchString(v), nil
		}
		loc := re.re.FindStringSubmatchIndex(v)
		if loc == nil {
			return false, nil
		}
		caps := make([]string, 0, min(len(loc)/2, maxMatchIndex+1))
		for j := 0; j+1 < len(loc) && j/2 <= maxMatchIndex; j += 2 {
			if loc[j] < 0 {
				caps = append(caps, "")
			} else {
				caps = append(caps, v[loc[j]:loc[j+1]])
			}
		}
		r.matchVars = caps
		return true, nil
	}
	return false, nil
}

// regex compiles a pattern that holds variables, once per run.
func (r *run) regex(pattern string, fold bool) (*compiledRegex, error) {
	key := pattern
	if fold {
		key = "i\x00" + pattern
	}
	if re, ok := r.regexes[key]; ok {
		return re, nil
	}
	if err := r.charge(len(pattern) * 64); err != nil {
		return nil, err
	}
	re, err := compileRegex(pattern, fold)
	if err == nil {
		// Compiling costs about this per instruction of the program
		// (measured on patterns near maxRegexInsts).
		err = r.charge(re.insts * costRegexCompile)
	}
	if err != nil {
		var re *regexError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("invalid regular expression %q: %w", pattern, err)
		}
		return nil, err
	}
	if r.regexes == nil {
		r.regexes = map[string]*compiledRegex{}
	}
	r.regexes[key] = re
	return re, nil
}
