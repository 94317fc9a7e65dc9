package wire

import (
	"strings"

	goimap "github.com/emersion/go-imap/v2"
)

// MaxSearchDepth bounds how deeply SEARCH keys may nest (parentheses,
// NOT, OR): the matcher recurses as deep for every message.
const MaxSearchDepth = 100

// FlagRecent is \Recent, which SEARCH's NEW, OLD and RECENT test
// (IMAP4rev1, RFC 3501 §6.4.4).
const FlagRecent goimap.Flag = `\Recent`

// SearchArgs is a parsed SEARCH command.
type SearchArgs struct {
	Criteria *goimap.SearchCriteria
	Options  *goimap.SearchOptions
	// Extended: RETURN was given, so the answer is ESEARCH (RFC 4731).
	Extended bool
	// Charset as given with CHARSET ("" without); the caller decides
	// whether it knows it (NO [BADCHARSET]).
	Charset string
}

// Search reads SEARCH's arguments: [RETURN (...)] [CHARSET c] keys
// (RFC 9051 §6.4.4, RFC 4731, RFC 5182).
func (d *Decoder) Search() (*SearchArgs, error) {
	a := &SearchArgs{Criteria: &goimap.SearchCriteria{}, Options: &goimap.SearchOptions{}}
	word, err := d.maybeWord()
	if err != nil {
		return nil, err
	}
	if word == "RETURN" {
		a.Extended = true
		if err := d.skipWord(word); err != nil {
			return nil, err
		}
		if err := d.SP(); err != nil {
			return nil, err
		}
		err := d.ExpectList(true, func() error {
			w, err := d.Atom()
			if err != nil {
				return err
			}
			switch strings.ToUpper(w) {
			case "MIN":
				a.Options.ReturnMin = true
			case "MAX":
				a.Options.ReturnMax = true
			case "ALL":
				a.Options.ReturnAll = true
			case "COUNT":
				a.Options.ReturnCount = true
			case "SAVE":
				a.Options.ReturnSave = true
			default:
				return syntaxf("Unknown SEARCH return option %s", truncate(w))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if err := d.SP(); err != nil {
			return nil, err
		}
		if word, err = d.maybeWord(); err != nil {
			return nil, err
		}
	}
	if word == "CHARSET" {
		if err := d.skipWord(word); err != nil {
			return nil, err
		}
		if err := d.SP(); err != nil {
			return nil, err
		}
		if a.Charset, err = d.AString(); err != nil {
			return nil, err
		}
		if err := d.SP(); err != nil {
			return nil, err
		}
	}
	// RFC 4731 §3.1: no return option is ALL.
	o := a.Options
	if !o.ReturnMin && !o.ReturnMax && !o.ReturnAll && !o.ReturnCount {
		o.ReturnAll = true
	}
	for {
		if err := d.searchKey(a.Criteria, 0); err != nil {
			return nil, err
		}
		if end, err := d.AtEnd(); err != nil || end {
			return a, err
		}
		if err := d.SP(); err != nil {
			return nil, err
		}
	}
}

// maybeWord peeks at up to 8 bytes of the atom that comes next, in upper
// case, without reading them ("" if none). It waits for a byte only after
// atom characters, which the end of the line must follow.
func (d *Decoder) maybeWord() (string, error) {
	var b []byte
	for k := 1; k <= 8; k++ {
		p, err := d.r.Peek(k)
		if err != nil {
			return "", err
		}
		if !isAtomChar(p[k-1]) {
			break
		}
		b = p
	}
	return strings.ToUpper(string(b)), nil
}

func (d *Decoder) skipWord(w string) error {
	for range len(w) {
		if _, err := d.next(); err != nil {
			return err
		}
	}
	return nil
}

func (d *Decoder) searchKey(c *goimap.SearchCriteria, depth int) error {
	if depth >= MaxSearchDepth {
		return syntaxf("Search keys nested too deeply (more than %d levels)", MaxSearchDepth)
	}
	b, err := d.peek()
	if err != nil {
		return err
	}
	switch {
	case b == '(':
		var sub goimap.SearchCriteria
		err := d.ExpectList(false, func() error { return d.searchKey(&sub, depth+1) })
		if err != nil {
			return err
		}
		c.And(&sub)
		return nil
	case b == '*' || b == '$' || (b >= '0' && b <= '9'):
		set, err := d.NumSet(false)
		if err != nil {
			return err
		}
		if goimap.IsSearchRes(set) {
			c.UID = append(c.UID, set.(goimap.UIDSet))
		} else {
			c.SeqNum = append(c.SeqNum, set.(goimap.SeqSet))
		}
		return nil
	}
	key, err := d.Atom()
	if err != nil {
		return syntaxf("Expected a search key")
	}
	key = strings.ToUpper(key)
	flag := func(f goimap.Flag, set bool) {
		if set {
			c.Flag = append(c.Flag, f)
		} else {
			c.NotFlag = append(c.NotFlag, f)
		}
	}
	switch key {
	case "ALL":
	case "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "SEEN":
		flag(goimap.Flag(`\`+key[:1]+strings.ToLower(key[1:])), true)
	case "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN":
		flag(goimap.Flag(`\`+key[2:3]+strings.ToLower(key[3:])), false)
	case "RECENT":
		flag(FlagRecent, true)
	case "OLD":
		flag(FlagRecent, false)
	case "NEW": // RFC 3501 §6.4.4: RECENT UNSEEN
		flag(FlagRecent, true)
		flag(goimap.FlagSeen, false)
	case "KEYWORD", "UNKEYWORD":
		if err := d.SP(); err != nil {
			return err
		}
		a, err := d.Atom()
		if err != nil {
			return syntaxf("Expected a keyword")
		}
		flag(goimap.Flag(a), key == "KEYWORD")
	case "BCC", "CC", "FROM", "SUBJECT", "TO":
		s, err := d.spAString()
		if err != nil {
			return err
		}
		name := key[:1] + strings.ToLower(key[1:])
		c.Header = append(c.Header, goimap.SearchCriteriaHeaderField{Key: name, Value: s})
	case "HEADER":
		if err := d.SP(); err != nil {
			return err
		}
		k, err := d.AString()
		if err != nil {
			return err
		}
		v, err := d.spAString()
		if err != nil {
			return err
		}
		c.Header = append(c.Header, goimap.SearchCriteriaHeaderField{Key: k, Value: v})
	case "BODY", "TEXT":
		s, err := d.spAString()
		if err != nil {
			return err
		}
		if key == "BODY" {
			c.Body = append(c.Body, s)
		} else {
			c.Text = append(c.Text, s)
		}
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE":
		if err := d.SP(); err != nil {
			return err
		}
		t, err := d.Date()
		if err != nil {
			return err
		}
		var sub goimap.SearchCriteria
		switch key {
		case "BEFORE":
			sub.Before = t
		case "ON":
			sub.Since, sub.Before = t, t.AddDate(0, 0, 1)
		case "SINCE":
			sub.Since = t
		case "SENTBEFORE":
			sub.SentBefore = t
		case "SENTON":
			sub.SentSince, sub.SentBefore = t, t.AddDate(0, 0, 1)
		case "SENTSINCE":
			sub.SentSince = t
		}
		c.And(&sub)
	case "LARGER", "SMALLER":
		if err := d.SP(); err != nil {
			return err
		}
		n, err := d.Number64()
		if err != nil {
			return err
		}
		var sub goimap.SearchCriteria
		if key == "LARGER" {
			sub.Larger = n
		} else {
			sub.Smaller = n
		}
		c.And(&sub)
	case "UID":
		if err := d.SP(); err != nil {
			return err
		}
		set, err := d.NumSet(true)
		if err != nil {
			return err
		}
		c.UID = append(c.UID, set.(goimap.UIDSet))
	case "NOT":
		if err := d.SP(); err != nil {
			return err
		}
		var sub goimap.SearchCriteria
		if err := d.searchKey(&sub, depth+1); err != nil {
			return err
		}
		c.Not = append(c.Not, sub)
	case "OR":
		var pair [2]goimap.SearchCriteria
		for i := range pair {
			if err := d.SP(); err != nil {
				return err
			}
			if err := d.searchKey(&pair[i], depth+1); err != nil {
				return err
			}
		}
		c.Or = append(c.Or, pair)
	default:
		return syntaxf("Unknown search key %s", truncate(key))
	}
	return nil
}

func (d *Decoder) spAString() (string, error) {
	if err := d.SP(); err != nil {
		return "", err
	}
	return d.AString()
}
