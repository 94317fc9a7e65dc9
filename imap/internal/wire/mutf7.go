package wire

import (
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Modified UTF-7 (RFC 3501 §5.1.3), the mailbox names of IMAP4rev1
// clients: printable ASCII stands for itself ("&" is "&-"); anything else
// is UTF-16BE in base64 with "," for "/", between "&" and "-".

var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

var errMUTF7 = errors.New("invalid modified UTF-7")

// EncodeMUTF7 encodes a UTF-8 name (invalid bytes become U+FFFD).
func EncodeMUTF7(s string) string {
	var sb strings.Builder
	var run []uint16
	flush := func() {
		if len(run) == 0 {
			return
		}
		b := make([]byte, 2*len(run))
		for i, u := range run {
			b[2*i], b[2*i+1] = byte(u>>8), byte(u)
		}
		sb.WriteByte('&')
		sb.WriteString(mutf7.EncodeToString(b))
		sb.WriteByte('-')
		run = run[:0]
	}
	for _, r := range s {
		if r >= 0x20 && r <= 0x7e {
			flush()
			sb.WriteRune(r)
			if r == '&' {
				sb.WriteByte('-')
			}
			continue
		}
		run = utf16.AppendRune(run, r)
	}
	flush()
	return sb.String()
}

// DecodeMUTF7 decodes a name, refusing every form RFC 3501 §5.1.3 does
// not allow: 8-bit or control characters, a shift not closed by "-",
// printable ASCII or nothing inside a shift (other than "&-"), two shifts
// in a row ("&AC4-&AC4-" is "&AC4ALg-"), bits left over, and broken
// UTF-16.
func DecodeMUTF7(s string) (string, error) {
	if !strings.Contains(s, "&") {
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] > 0x7e {
				return "", errMUTF7
			}
		}
		return s, nil
	}
	var sb strings.Builder
	afterShift := false // the previous character closed a shift
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", errMUTF7
		}
		if c != '&' {
			sb.WriteByte(c)
			i++
			afterShift = false
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", errMUTF7
		}
		enc := s[i+1 : i+1+end]
		i += end + 2
		if enc == "" {
			sb.WriteByte('&')
			afterShift = false
			continue
		}
		if afterShift {
			return "", errMUTF7
		}
		b, err := mutf7.DecodeString(enc)
		if err != nil || len(b)%2 != 0 || len(b) == 0 {
			return "", errMUTF7
		}
		// Bits beyond the last whole byte must be zero: re-encoding
		// gives back the same text only then.
		if mutf7.EncodeToString(b) != enc {
			return "", errMUTF7
		}
		units := make([]uint16, len(b)/2)
		for k := range units {
			units[k] = uint16(b[2*k])<<8 | uint16(b[2*k+1])
		}
		for k := 0; k < len(units); k++ {
			u := units[k]
			var r rune
			switch {
			case utf16.IsSurrogate(rune(u)):
				if k+1 >= len(units) {
					return "", errMUTF7
				}
				r = utf16.DecodeRune(rune(u), rune(units[k+1]))
				if r == utf8.RuneError {
					return "", errMUTF7
				}
				k++
			default:
				r = rune(u)
				if r >= 0x20 && r <= 0x7e {
					return "", errMUTF7 // printable ASCII must stand for itself
				}
			}
			sb.WriteRune(r)
		}
		afterShift = true
	}
	return sb.String(), nil
}
