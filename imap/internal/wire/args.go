package wire

import (
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"
)

// Arguments shared by several commands: sequence sets, flags, dates,
// STATUS items, STORE's flags, LIST's options.

// NumSet reads a sequence set (uid: a UID set), or "$", the saved search
// result (RFC 5182). "*" is 0 in the ranges, as go-imap has it.
func (d *Decoder) NumSet(uid bool) (goimap.NumSet, error) {
	if ok, err := d.Maybe('$'); err != nil || ok {
		return goimap.SearchRes(), err
	}
	var seqs goimap.SeqSet
	var uids goimap.UIDSet
	for {
		start, err := d.seqNumber()
		if err != nil {
			return nil, err
		}
		stop := start
		if ok, err := d.Maybe(':'); err != nil {
			return nil, err
		} else if ok {
			if stop, err = d.seqNumber(); err != nil {
				return nil, err
			}
		}
		if uid {
			uids = append(uids, goimap.UIDRange{Start: goimap.UID(start), Stop: goimap.UID(stop)})
		} else {
			seqs = append(seqs, goimap.SeqRange{Start: start, Stop: stop})
		}
		if ok, err := d.Maybe(','); err != nil {
			return nil, err
		} else if !ok {
			break
		}
	}
	if uid {
		return uids, nil
	}
	return seqs, nil
}

// seqNumber reads nz-number or "*" (0).
func (d *Decoder) seqNumber() (uint32, error) {
	if ok, err := d.Maybe('*'); err != nil || ok {
		return 0, err
	}
	b, err := d.peek()
	if err != nil {
		return 0, err
	}
	if b < '0' || b > '9' {
		return 0, syntaxf("Invalid sequence set")
	}
	n, err := d.Number()
	if err != nil {
		var se *SyntaxError
		if asSyntax(err, &se) {
			return 0, syntaxf("Invalid sequence set: number too large (the largest is 4294967295)")
		}
		return 0, err
	}
	if n == 0 {
		return 0, syntaxf("Invalid sequence set: 0 is not a message number")
	}
	return n, nil
}

func asSyntax(err error, se **SyntaxError) bool {
	e, ok := err.(*SyntaxError)
	if ok {
		*se = e
	}
	return ok
}

// Flag reads a flag: a keyword (an atom), a system flag or extension
// flag ("\" atom), or "\*", which only PERMANENTFLAGS may carry (the
// caller refuses it).
func (d *Decoder) Flag() (goimap.Flag, error) {
	back, err := d.Maybe('\\')
	if err != nil {
		return "", err
	}
	if back {
		if star, err := d.Maybe('*'); err != nil || star {
			return goimap.FlagWildcard, err
		}
	}
	a, err := d.Atom()
	if err != nil {
		return "", syntaxf("Expected a flag")
	}
	if back {
		return goimap.Flag(`\` + a), nil
	}
	return goimap.Flag(a), nil
}

// FlagList reads "(" [flag *(SP flag)] ")".
func (d *Decoder) FlagList() ([]goimap.Flag, error) {
	flags := []goimap.Flag{}
	err := d.ExpectList(true, func() error {
		f, err := d.Flag()
		flags = append(flags, f)
		return err
	})
	return flags, err
}

var months = [...]string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}

// dateText parses date-day "-" date-month "-" date-year.
func dateText(s string) (year int, month time.Month, day int, ok bool) {
	parts := strings.Split(s, "-")
	if len(parts) != 3 || len(parts[0]) < 1 || len(parts[0]) > 2 || len(parts[2]) != 4 {
		return 0, 0, 0, false
	}
	day, ok1 := digits(strings.TrimLeft(parts[0], " "))
	year, ok2 := digits(parts[2])
	m := 0
	for i, name := range months {
		if strings.EqualFold(parts[1], name) {
			m = i + 1
		}
	}
	if !ok1 || !ok2 || m == 0 || day < 1 || day > 31 {
		return 0, 0, 0, false
	}
	return year, time.Month(m), day, true
}

func digits(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// Date reads a SEARCH date: date-text, quoted or not. The time is
// midnight UTC of that day.
func (d *Decoder) Date() (time.Time, error) {
	b, err := d.peek()
	if err != nil {
		return time.Time{}, err
	}
	var s string
	if b == '"' {
		s, err = d.quoted()
	} else {
		s, err = d.Atom()
	}
	if err != nil {
		return time.Time{}, err
	}
	y, m, day, ok := dateText(s)
	if !ok {
		return time.Time{}, syntaxf("Invalid date (expected e.g. 1-Feb-2024)")
	}
	return time.Date(y, m, day, 0, 0, 0, 0, time.UTC), nil
}

// DateTime reads APPEND's date-time, "dd-Mon-yyyy hh:mm:ss +zzzz".
func (d *Decoder) DateTime() (time.Time, error) {
	s, err := d.quoted()
	if err != nil {
		return time.Time{}, err
	}
	bad := syntaxf("Invalid date-time (expected e.g. \"01-Feb-2024 10:00:00 +0100\")")
	f := strings.Fields(s)
	if len(f) != 3 || len(f[1]) != 8 || len(f[2]) != 5 {
		return time.Time{}, bad
	}
	y, m, day, ok := dateText(f[0])
	if !ok {
		return time.Time{}, bad
	}
	t, err := time.Parse("15:04:05 -0700", f[1]+" "+f[2])
	if err != nil {
		return time.Time{}, bad
	}
	return time.Date(y, m, day, t.Hour(), t.Minute(), t.Second(), 0, t.Location()), nil
}

// StatusItems reads a STATUS item list (RFC 9051 §6.3.11, RFC 7889).
func (d *Decoder) StatusItems() (*goimap.StatusOptions, error) {
	var o goimap.StatusOptions
	err := d.ExpectList(false, func() error {
		a, err := d.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(a) {
		case "MESSAGES":
			o.NumMessages = true
		case "RECENT":
			o.NumRecent = true
		case "UIDNEXT":
			o.UIDNext = true
		case "UIDVALIDITY":
			o.UIDValidity = true
		case "UNSEEN":
			o.NumUnseen = true
		case "DELETED":
			o.NumDeleted = true
		case "SIZE":
			o.Size = true
		case "APPENDLIMIT":
			o.AppendLimit = true
		default:
			return syntaxf("Unknown STATUS item %s", truncate(a))
		}
		return nil
	})
	return &o, err
}

// StoreFlags reads STORE's ["+"/"-"]FLAGS[.SILENT] and its flags, in a
// list or not.
func (d *Decoder) StoreFlags() (*goimap.StoreFlags, error) {
	a, err := d.Atom()
	if err != nil {
		return nil, err
	}
	var f goimap.StoreFlags
	name := strings.ToUpper(a)
	switch {
	case strings.HasPrefix(name, "+"):
		f.Op, name = goimap.StoreFlagsAdd, name[1:]
	case strings.HasPrefix(name, "-"):
		f.Op, name = goimap.StoreFlagsDel, name[1:]
	}
	switch name {
	case "FLAGS":
	case "FLAGS.SILENT":
		f.Silent = true
	default:
		return nil, syntaxf("Expected FLAGS, +FLAGS or -FLAGS (with or without .SILENT)")
	}
	if err := d.SP(); err != nil {
		return nil, err
	}
	if b, err := d.peek(); err != nil {
		return nil, err
	} else if b == '(' {
		f.Flags, err = d.FlagList()
		return &f, err
	}
	for {
		fl, err := d.Flag()
		if err != nil {
			return nil, err
		}
		f.Flags = append(f.Flags, fl)
		if end, err := d.AtEnd(); err != nil || end {
			return &f, err
		}
		if err := d.SP(); err != nil {
			return nil, err
		}
	}
}

// ListArgs reads LIST's arguments (RFC 9051 §6.3.9 and LIST-EXTENDED,
// RFC 5258 §3): selection options, reference, one pattern or a list of
// them, and return options. A pattern "" is left out of patterns (LIST
// "" "" asks for the delimiter).
func (d *Decoder) ListArgs() (ref string, patterns []string, o *goimap.ListOptions, err error) {
	o = &goimap.ListOptions{}
	base := false // a selection option RECURSIVEMATCH can modify
	has, err := d.List(true, func() error {
		a, err := d.AString()
		if err != nil {
			return err
		}
		switch strings.ToUpper(a) {
		case "SUBSCRIBED":
			o.SelectSubscribed, base = true, true
		case "REMOTE":
			o.SelectRemote = true
		case "RECURSIVEMATCH":
			o.SelectRecursiveMatch = true
		case "SPECIAL-USE":
			o.SelectSpecialUse, base = true, true
		default:
			return syntaxf("Unknown LIST selection option %s", truncate(a))
		}
		return nil
	})
	if err != nil {
		return "", nil, nil, err
	}
	if o.SelectRecursiveMatch && !base {
		return "", nil, nil, syntaxf("RECURSIVEMATCH needs SUBSCRIBED or SPECIAL-USE (RFC 5258 §3)")
	}
	if has {
		if err := d.SP(); err != nil {
			return "", nil, nil, err
		}
	}
	if ref, err = d.ListMailbox(); err != nil {
		// The reference is a mailbox, but wildcards are harmless in it.
		return "", nil, nil, err
	}
	if err := d.SP(); err != nil {
		return "", nil, nil, err
	}
	list, err := d.List(false, func() error {
		p, err := d.ListMailbox()
		if p != "" {
			patterns = append(patterns, p)
		}
		return err
	})
	if err != nil {
		return "", nil, nil, err
	}
	if !list {
		p, err := d.ListMailbox()
		if err != nil {
			return "", nil, nil, err
		}
		if p != "" {
			patterns = append(patterns, p)
		}
	}
	if end, err := d.AtEnd(); err != nil || end {
		return ref, patterns, o, err
	}
	if err := d.SP(); err != nil {
		return "", nil, nil, err
	}
	if a, err := d.Atom(); err != nil || !strings.EqualFold(a, "RETURN") {
		return "", nil, nil, syntaxf("Expected RETURN")
	}
	if err := d.SP(); err != nil {
		return "", nil, nil, err
	}
	err = d.ExpectList(true, func() error {
		a, err := d.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(a) {
		case "SUBSCRIBED":
			o.ReturnSubscribed = true
		case "CHILDREN":
			o.ReturnChildren = true
		case "SPECIAL-USE":
			o.ReturnSpecialUse = true
		case "STATUS":
			if err := d.SP(); err != nil {
				return err
			}
			o.ReturnStatus, err = d.StatusItems()
			return err
		default:
			return syntaxf("Unknown LIST return option %s", truncate(a))
		}
		return nil
	})
	return ref, patterns, o, err
}

// truncate shortens a client's word for an error message.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
