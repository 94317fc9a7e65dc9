package sieve

import (
	"fmt"
	"net/mail"
	"strings"
	"time"
)

// parseZone reads a :zone argument, "+hhmm" or "-hhmm" (RFC 5260 §4.1).
func parseZone(z string) (*time.Location, bool) {
	if len(z) != 5 || (z[0] != '+' && z[0] != '-') {
		return nil, false
	}
	for i := 1; i < 5; i++ {
		if z[i] < '0' || z[i] > '9' {
			return nil, false
		}
	}
	// Any four digits, as Pigeonhole accepts them (+2500, +0160).
	h := int(z[1]-'0')*10 + int(z[2]-'0')
	m := int(z[3]-'0')*10 + int(z[4]-'0')
	off := (h*60 + m) * 60
	if z[0] == '-' {
		off = -off
	}
	return time.FixedZone(z, off), true
}

// mjdEpoch is day 0 of the Modified Julian Day count (RFC 5260 §4.2).
var mjdEpoch = time.Date(1858, time.November, 17, 0, 0, 0, 0, time.UTC)

// datePart formats one part of t (RFC 5260 §4.2); ok is false for an
// unknown part (possible only when the part came from a variable).
func datePart(t time.Time, part string) (string, bool) {
	switch strings.ToLower(part) {
	case "year":
		return fmt.Sprintf("%04d", t.Year()), true
	case "month":
		return fmt.Sprintf("%02d", int(t.Month())), true
	case "day":
		return fmt.Sprintf("%02d", t.Day()), true
	case "date":
		return t.Format("2006-01-02"), true
	case "julian":
		day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		return fmt.Sprint(int64(day.Sub(mjdEpoch).Hours()) / 24), true
	case "hour":
		return fmt.Sprintf("%02d", t.Hour()), true
	case "minute":
		return fmt.Sprintf("%02d", t.Minute()), true
	case "second":
		return fmt.Sprintf("%02d", t.Second()), true
	case "time":
		return t.Format("15:04:05"), true
	case "iso8601":
		// RFC 3339 §5.6, with "Z" for UTC as Pigeonhole writes it.
		return t.Format("2006-01-02T15:04:05Z07:00"), true
	case "std11":
		return t.Format("Mon, 02 Jan 2006 15:04:05 -0700"), true
	case "zone":
		return t.Format("-0700"), true
	case "weekday":
		return fmt.Sprint(int(t.Weekday())), true
	}
	return "", false
}

// parseDate reads a date header field's value (RFC 5322 §3.3, with the
// obsolete forms net/mail accepts).
func parseDate(v string) (time.Time, bool) {
	t, err := mail.ParseDate(strings.TrimSpace(v))
	return t, err == nil
}
