package sieve

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// accum gathers a run's actions, merging duplicates and refusing
// conflicts (RFC 5228 §2.10).
type accum struct {
	actions    []Action
	keep       bool // the implicit keep is in force
	discarded  bool
	redirects  int
	rejected   bool
	vacation   bool
	stores     map[string]int // folder key → position in actions
	redirected map[string]bool
	dups       []DuplicateMark
	dupKeys    map[string]bool
}

func newAccum() *accum {
	// The maps are made when first written: most runs take one action.
	return &accum{keep: true}
}

// clone copies the accumulator, so that a failed script's actions can
// be dropped by dropping the copy.
func (a *accum) clone() *accum {
	c := *a
	c.actions = slices.Clone(a.actions)
	c.stores = maps.Clone(a.stores)
	c.redirected = maps.Clone(a.redirected)
	c.dups = slices.Clone(a.dups)
	c.dupKeys = maps.Clone(a.dupKeys)
	return &c
}

// folderKey identifies a folder for merging stores: INBOX is case
// insensitive (RFC 3501 §5.1), other names are not.
func folderKey(name string) string {
	if strings.EqualFold(name, "INBOX") {
		return "INBOX"
	}
	return name
}

var errRejectConflict = errors.New("reject and ereject cannot be combined with keep, fileinto, redirect or vacation (RFC 5429 §2.3)")

// add takes an action, checking Limits.MaxActions.
func (a *accum) add(act Action, l Limits) error {
	count := func() error {
		if len(a.actions) >= l.MaxActions {
			return fmt.Errorf("more than %d actions", l.MaxActions)
		}
		return nil
	}
	switch x := act.(type) {
	case Keep:
		return a.store("INBOX", x.Flags, false, true, func() Action { return x }, count)
	case FileInto:
		return a.store(x.Mailbox, x.Flags, x.Create, !x.Copy, func() Action { return x }, count)
	case Redirect:
		if a.rejected {
			return errRejectConflict
		}
		key := strings.ToLower(x.Address)
		if !x.Copy {
			a.keep = false
		}
		if a.redirected[key] {
			return nil // RFC 5228 §4.2: not twice to one address
		}
		if err := count(); err != nil {
			return err
		}
		if a.redirected == nil {
			a.redirected = map[string]bool{}
		}
		a.redirected[key] = true
		a.redirects++
		a.actions = append(a.actions, x)
	case Discard:
		a.keep = false
		a.discarded = true
	case Reject:
		if a.rejected {
			return errors.New("more than one reject")
		}
		if len(a.stores) > 0 || len(a.redirected) > 0 || a.vacation {
			return errRejectConflict
		}
		if err := count(); err != nil {
			return err
		}
		a.rejected = true
		a.keep = false
		a.actions = append(a.actions, x)
	case Vacation:
		if a.vacation {
			return errors.New("more than one vacation (RFC 5230 §4.7)")
		}
		if a.rejected {
			return errRejectConflict
		}
		if err := count(); err != nil {
			return err
		}
		a.vacation = true
		a.actions = append(a.actions, x)
	}
	return nil
}

// store adds a keep or fileinto; a second one into the same folder only
// adds its flags to the first (RFC 5228 §2.10.3).
func (a *accum) store(folder string, flags []string, create, cancel bool, act func() Action, count func() error) error {
	if a.rejected {
		return errRejectConflict
	}
	if cancel {
		a.keep = false
	}
	key := folderKey(folder)
	if i, ok := a.stores[key]; ok {
		switch x := a.actions[i].(type) {
		case Keep:
			x.Flags = mergeFlags(x.Flags, flags)
			a.actions[i] = x
		case FileInto:
			x.Flags = mergeFlags(x.Flags, flags)
			x.Create = x.Create || create
			x.Copy = x.Copy && !cancel
			a.actions[i] = x
		}
		return nil
	}
	if err := count(); err != nil {
		return err
	}
	if a.stores == nil {
		a.stores = map[string]int{}
	}
	a.stores[key] = len(a.actions)
	a.actions = append(a.actions, act())
	return nil
}

// result lists the actions, with the implicit keep (with the flags of
// imap4flags' internal variable) if it is still in force.
func (a *accum) result(flags string) *Result {
	res := &Result{Actions: slices.Clone(a.actions), Duplicates: slices.Clone(a.dups)}
	if a.keep {
		if i, ok := a.stores["INBOX"]; ok {
			// A fileinto :copy "INBOX" is the same copy.
			if f, isFile := res.Actions[i].(FileInto); isFile {
				f.Flags = mergeFlags(f.Flags, storeFlags(parseFlags(nil, flags)))
				res.Actions[i] = f
			}
		} else {
			res.Actions = append(res.Actions, Keep{Flags: storeFlags(parseFlags(nil, flags)), Implicit: true})
		}
	} else if a.discarded && len(res.Actions) == 0 {
		res.Actions = append(res.Actions, Discard{})
	}
	return res
}

// mergeFlags is the union of two flag lists.
func mergeFlags(a, b []string) []string {
	for _, f := range b {
		if !containsFlag(a, f) {
			a = append(a, f)
		}
	}
	return a
}

func containsFlag(list []string, f string) bool {
	for _, x := range list {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// parseFlags splits flag strings at spaces (RFC 5232 §3) into a list
// without duplicates (compared case-insensitively), appended to out.
func parseFlags(out []string, s ...string) []string {
	for _, x := range s {
		for _, f := range strings.Fields(x) {
			if !containsFlag(out, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// systemFlag returns the IMAP system flag f names, as IMAP spells it
// (RFC 3501 §2.3.2; \Recent is the server's, not a script's).
func systemFlag(f string) (string, bool) {
	switch strings.ToLower(f) {
	case `\seen`:
		return `\Seen`, true
	case `\answered`:
		return `\Answered`, true
	case `\flagged`:
		return `\Flagged`, true
	case `\deleted`:
		return `\Deleted`, true
	case `\draft`:
		return `\Draft`, true
	}
	return "", false
}

// storeFlags keeps the flags that can be stored: system flags, spelt as
// IMAP spells them, and keywords that are IMAP atoms (RFC 3501 §9);
// others are dropped, as Pigeonhole drops them with a warning.
func storeFlags(flags []string) []string {
	var out []string
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			if s, ok := systemFlag(f); ok {
				out = append(out, s)
			}
			continue
		}
		if validKeyword(f) {
			out = append(out, f)
		}
	}
	return out
}

func validKeyword(f string) bool {
	if f == "" || len(f) > 255 {
		return false
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// flagList returns the flags for a keep or fileinto: its :flags, or
// else the internal variable (RFC 5232 §5).
func (r *run) flagList(f *[]str) ([]string, error) {
	var list []string
	if f == nil {
		list = parseFlags(nil, r.flags)
	} else {
		for _, s := range *f {
			list = parseFlags(list, r.expand(s))
		}
	}
	return storeFlags(list), nil
}

func (c flagCmd) exec(r *run) error {
	cur := r.flags
	if c.v != nil {
		cur = r.getVar(*c.v)
	}
	var given []string
	for _, s := range c.flags {
		given = parseFlags(given, r.expand(s))
	}
	var list []string
	switch c.op {
	case flagSet:
		list = given
	case flagAdd:
		list = mergeFlags(parseFlags(nil, cur), given)
	case flagRemove:
		for _, f := range parseFlags(nil, cur) {
			if !containsFlag(given, f) {
				list = append(list, f)
			}
		}
	}
	v := strings.Join(list, " ")
	if err := r.charge(len(v)); err != nil {
		return err
	}
	if c.v != nil {
		r.setVar(*c.v, v)
	} else {
		r.flags = truncateUTF8(v, r.limits.MaxVariableSize)
	}
	return nil
}
