package srs

import (
	"crypto/hmac"
	"crypto/sha1" // HMAC-SHA1 is what libsrs2 uses; changing it breaks compatibility.
	"crypto/subtle"
	"encoding/base64"
	"time"
)

// The timestamp is the day number in two base32 characters (libsrs2's
// SRS_TIME_BASECHARS, the RFC 4648 alphabet), so it wraps every 1024 days.
const (
	timeBaseChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	timeSlots     = 1 << 10
	hashLength    = 4 // libsrs2's default hashlength, and hashmin
)

// timestamp encodes the day of t as libsrs2's srs_timestamp_create does.
func timestamp(t time.Time) string {
	day := dayNumber(t)
	return string([]byte{timeBaseChars[(day>>5)&31], timeBaseChars[day&31]})
}

// dayNumber is the unix day of t modulo the 1024 timestamp slots.
func dayNumber(t time.Time) int {
	day := t.Unix() / 86400
	if t.Unix() < 0 && t.Unix()%86400 != 0 {
		day-- // floor, so the result stays in [0, timeSlots)
	}
	return int(((day % timeSlots) + timeSlots) % timeSlots)
}

// parseTimestamp decodes a two-character timestamp, case-insensitively as
// libsrs2 does (it upper-cases each character).
func parseTimestamp(stamp string) (int, bool) {
	if len(stamp) != 2 {
		return 0, false
	}
	then := 0
	for i := 0; i < 2; i++ {
		c := stamp[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		v := -1
		for j := 0; j < len(timeBaseChars); j++ {
			if timeBaseChars[j] == c {
				v = j
				break
			}
		}
		if v < 0 {
			return 0, false
		}
		then = then<<5 | v
	}
	return then, true
}

// fresh reports whether a timestamp made on day then is at most maxAgeDays
// old today. As in libsrs2's srs_timestamp_check, the age is taken modulo
// 1024 days, so a timestamp from the future counts as ~1023 days old.
func (s *SRS) fresh(then int) bool {
	age := ((dayNumber(s.now())-then)%timeSlots + timeSlots) % timeSlots
	return age <= s.maxAgeDays
}

// hash returns the four-character hash of fields under secret idx: the
// standard base64 of HMAC-SHA1 over the concatenated fields, each folded to
// ASCII lower case (libsrs2 uses C's tolower, which leaves non-ASCII bytes
// alone). Four base64 characters take exactly the first three digest bytes.
func (s *SRS) hash(idx int, fields ...string) string {
	m := hmac.New(sha1.New, s.secrets[idx])
	for _, f := range fields {
		m.Write(lowerASCII([]byte(f)))
	}
	return base64.StdEncoding.EncodeToString(m.Sum(nil)[:3])
}

// checkHash compares got against the hash under every secret, ignoring
// ASCII case (libsrs2's strncasecmp) and in constant time. Any length other
// than hashLength fails, as it does in libsrs2 with its default settings.
func (s *SRS) checkHash(got string, fields ...string) bool {
	if len(got) != hashLength {
		return false
	}
	g := lowerASCII([]byte(got))
	ok := 0
	for i := range s.secrets {
		ok |= subtle.ConstantTimeCompare(g, lowerASCII([]byte(s.hash(i, fields...))))
	}
	return ok == 1
}

// lowerASCII folds A-Z to a-z in place and returns b.
func lowerASCII(b []byte) []byte {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return b
}
