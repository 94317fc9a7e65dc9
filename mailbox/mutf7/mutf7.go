// Package mutf7 is modified UTF-7 (RFC 3501 §5.1.3), the spelling of
// folder names on disk that Dovecot uses for Maildir++ directories and
// mbox files alike, so that folders copied to or from Dovecot keep their
// names. go-imap has a codec but keeps it internal.
package mutf7

import (
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// mutf7Alphabet is base64 with "," in place of "/" (RFC 3501 §5.1.3).
const mutf7Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"

var mutf7Index = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(mutf7Alphabet); i++ {
		t[mutf7Alphabet[i]] = int8(i)
	}
	return t
}()

// ErrInvalid is returned for a string that is not canonical modified UTF-7.
var ErrInvalid = errors.New("invalid modified UTF-7")

// Encode encodes a UTF-8 string. Printable ASCII stands for itself,
// "&" becomes "&-", and every other run of characters is UTF-16BE in
// modified base64 between "&" and "-". Invalid UTF-8 is an error.
func Encode(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", ErrInvalid
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c <= 0x7e {
			if c == '&' {
				b.WriteString("&-")
			} else {
				b.WriteByte(c)
			}
			i++
			continue
		}
		// A run of characters that are not printable ASCII.
		j := i
		for j < len(s) && (s[j] < 0x20 || s[j] > 0x7e) {
			_, n := utf8.DecodeRuneInString(s[j:])
			j += n
		}
		var units []uint16
		for _, r := range s[i:j] {
			units = utf16.AppendRune(units, r)
		}
		b.WriteByte('&')
		var acc uint32
		bits := 0
		for _, u := range units {
			acc = acc<<16 | uint32(u)
			bits += 16
			for bits >= 6 {
				bits -= 6
				b.WriteByte(mutf7Alphabet[(acc>>bits)&0x3f])
			}
		}
		if bits > 0 {
			b.WriteByte(mutf7Alphabet[(acc<<(6-bits))&0x3f])
		}
		b.WriteByte('-')
		i = j
	}
	return b.String(), nil
}

// Decode decodes modified UTF-7, refusing anything that the encoder
// would not have produced (raw non-ASCII, printable ASCII in base64, bad
// padding bits, broken surrogates, two encoded runs in a row), so that
// every name has exactly one spelling on disk.
func Decode(s string) (string, error) {
	var b strings.Builder
	prevEncoded := false
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", ErrInvalid
		}
		if c != '&' {
			b.WriteByte(c)
			i++
			prevEncoded = false
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", ErrInvalid
		}
		run := s[i+1 : i+1+end]
		i += end + 2
		if run == "" {
			b.WriteByte('&')
			prevEncoded = false
			continue
		}
		if prevEncoded {
			return "", ErrInvalid
		}
		prevEncoded = true
		var units []uint16
		var acc uint32
		bits := 0
		for k := 0; k < len(run); k++ {
			v := mutf7Index[run[k]]
			if v < 0 {
				return "", ErrInvalid
			}
			acc = acc<<6 | uint32(v)
			bits += 6
			if bits >= 16 {
				bits -= 16
				units = append(units, uint16(acc>>bits))
				acc &= 1<<bits - 1
			}
		}
		// Leftover bits must be fewer than six and zero.
		if bits >= 6 || acc != 0 || len(units) == 0 {
			return "", ErrInvalid
		}
		for k := 0; k < len(units); k++ {
			u := units[k]
			var r rune
			switch {
			case utf16.IsSurrogate(rune(u)):
				if u >= 0xdc00 || k+1 >= len(units) {
					return "", ErrInvalid
				}
				r = utf16.DecodeRune(rune(u), rune(units[k+1]))
				if r == utf8.RuneError {
					return "", ErrInvalid
				}
				k++
			default:
				r = rune(u)
			}
			if r >= 0x20 && r <= 0x7e {
				return "", ErrInvalid // printable ASCII must stand for itself
			}
			b.WriteRune(r)
		}
	}
	return b.String(), nil
}
