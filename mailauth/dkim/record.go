package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Record is a parsed DKIM key record (RFC 6376 §3.6.1).
type Record struct {
	KeyType   string   // k=, default "rsa"
	PublicKey []byte   // p=, decoded; empty means revoked
	Hashes    []string // h=, nil means all
	Services  []string // s=, default ["*"]
	Flags     []string // t=
}

// Testing reports t=y: verifiers may treat failures as if unsigned.
func (r *Record) Testing() bool { return slices.Contains(r.Flags, "y") }

// Revoked reports an empty p= (RFC 6376 §3.6.1: the key was revoked).
func (r *Record) Revoked() bool { return len(r.PublicKey) == 0 }

// ParseTags parses a tag-list (RFC 6376 §3.2): "tag=value" separated by
// semicolons, with folding white space around both. Duplicate or
// malformed tags are errors.
func ParseTags(s string) (map[string]string, error) {
	tags := map[string]string{}
	for part := range strings.SplitSeq(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsFunc(k, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_')
		}) {
			return nil, fmt.Errorf("malformed tag %q", part)
		}
		if _, dup := tags[k]; dup {
			return nil, fmt.Errorf("tag %q appears twice", k)
		}
		tags[k] = strings.TrimSpace(v)
	}
	return tags, nil
}

// ParseRecord parses a DKIM key record, the TXT strings already joined.
func ParseRecord(txt string) (*Record, error) {
	tags, err := ParseTags(txt)
	if err != nil {
		return nil, err
	}
	// RFC 6376 §3.6.1: v= is optional but, if present, first and DKIM1.
	if v, ok := tags["v"]; ok {
		if v != "DKIM1" || !strings.HasPrefix(strings.TrimSpace(txt), "v") {
			return nil, fmt.Errorf("v=%s: not a DKIM1 record", v)
		}
	}
	p, ok := tags["p"]
	if !ok {
		return nil, errors.New("no p= tag")
	}
	r := &Record{KeyType: "rsa", Services: []string{"*"}}
	if k, ok := tags["k"]; ok {
		r.KeyType = k
	}
	p = strings.Join(strings.Fields(p), "")
	if r.PublicKey, err = base64.StdEncoding.DecodeString(p); err != nil {
		return nil, fmt.Errorf("p=: %w", err)
	}
	list := func(v string) []string {
		var out []string
		for e := range strings.SplitSeq(v, ":") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, e)
			}
		}
		return out
	}
	if h, ok := tags["h"]; ok {
		r.Hashes = list(h)
	}
	if s, ok := tags["s"]; ok {
		r.Services = list(s)
	}
	if t, ok := tags["t"]; ok {
		r.Flags = list(t)
	}
	return r, nil
}

// Matches reports whether the record publishes pub, usable for signing
// email with SHA-256; when it does not, the error says why.
func (r *Record) Matches(pub crypto.PublicKey) error {
	if r.Revoked() {
		return errors.New("the record is revoked (empty p=)")
	}
	if r.KeyType != Algorithm(pub) {
		return fmt.Errorf("the record is for k=%s, the key is %s", r.KeyType, Algorithm(pub))
	}
	if r.Hashes != nil && !slices.Contains(r.Hashes, "sha256") {
		return fmt.Errorf("the record allows h=%s, not sha256", strings.Join(r.Hashes, ":"))
	}
	if !slices.Contains(r.Services, "*") && !slices.Contains(r.Services, "email") {
		return fmt.Errorf("the record is for s=%s, not email", strings.Join(r.Services, ":"))
	}
	var same bool
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		k, err := x509.ParsePKIXPublicKey(r.PublicKey)
		if err != nil {
			// Some publish the bare RSAPublicKey.
			if k2, err2 := x509.ParsePKCS1PublicKey(r.PublicKey); err2 == nil {
				k, err = k2, nil
			}
		}
		if err != nil {
			return fmt.Errorf("p= is not an RSA public key: %w", err)
		}
		same = pub.Equal(k)
	case ed25519.PublicKey:
		same = pub.Equal(ed25519.PublicKey(r.PublicKey))
	}
	if !same {
		return errors.New("the published key (p=) is not this key")
	}
	return nil
}
