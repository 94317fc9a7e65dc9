// Package dkim signs the mail that leaves the server (RFC 6376, with
// RSA-SHA256 and Ed25519-SHA256 of RFC 8463) and manages the keys: it
// generates them, stores them as PEM, and formats and parses the DNS TXT
// record that publishes each public key. The signatures themselves are
// computed by github.com/emersion/go-msgauth; this package chooses what is
// signed (opendkim's header list, From oversigned, relaxed/relaxed) and
// with which key (the From: domain's). It knows nothing of queues or
// sessions: callers hand it a message and prepend what it returns.
package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Algorithms that Generate accepts.
const (
	RSA     = "rsa"     // RSA 2048 with SHA-256: what every verifier knows
	Ed25519 = "ed25519" // RFC 8463: short keys, fast; sign with both
)

// RSABits is the size of generated RSA keys (RFC 8301 §3.2: at least
// 1024, 2048 recommended; larger keys outgrow a single DNS TXT string and
// some provisioning interfaces).
const RSABits = 2048

// Generate makes a new private key for algo (RSA or Ed25519).
func Generate(algo string) (crypto.Signer, error) {
	switch algo {
	case RSA:
		return rsa.GenerateKey(rand.Reader, RSABits)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("unknown key algorithm %q: use %q or %q", algo, RSA, Ed25519)
}

// Algorithm names the key's algorithm as the k= tag does.
func Algorithm(pub crypto.PublicKey) string {
	switch pub.(type) {
	case *rsa.PublicKey:
		return RSA
	case ed25519.PublicKey:
		return Ed25519
	}
	return ""
}

// MarshalKey encodes a private key as PEM (PKCS #8), the form LoadKey
// reads.
func MarshalKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKey decodes a PEM private key: PKCS #8 (what MarshalKey writes) or
// PKCS #1 "RSA PRIVATE KEY" (what opendkim-genkey writes, so that an
// existing opendkim key can be kept).
func ParseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key found")
	}
	var k any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("decode private key: %w", err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 1024 {
			// RFC 8301 §3.2: verifiers must not accept them.
			return nil, fmt.Errorf("RSA key of %d bits is too short (at least 1024, 2048 recommended)", k.N.BitLen())
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported private key type %T: use RSA or Ed25519", k)
}

// LoadKey reads a private key file; errors name the file.
func LoadKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read DKIM key: %w", err)
	}
	k, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// PublicKeyData is the p= value for pub: base64 of the DER
// SubjectPublicKeyInfo for RSA (as opendkim-genkey publishes it), of the
// raw 32-octet key for Ed25519 (RFC 8463 §4).
func PublicKeyData(pub crypto.PublicKey) (string, error) {
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", err
		}
		return base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return base64.StdEncoding.EncodeToString(pub), nil
	}
	return "", fmt.Errorf("unsupported public key type %T", pub)
}

// RecordFor is the TXT record that publishes pub (RFC 6376 §3.6.1):
// "v=DKIM1; k=rsa; p=...".
func RecordFor(pub crypto.PublicKey) (string, error) {
	p, err := PublicKeyData(pub)
	if err != nil {
		return "", err
	}
	return "v=DKIM1; k=" + Algorithm(pub) + "; p=" + p, nil
}

// RecordName is where the key of selector is published for domain.
func RecordName(selector, domain string) string {
	return selector + "._domainkey." + strings.TrimSuffix(domain, ".")
}

// ZoneLine formats a TXT record as a zone-file line, its value split into
// quoted strings of at most 255 octets (RFC 1035 §3.3.14; a 2048-bit RSA
// key needs two), as opendkim-genkey prints it.
func ZoneLine(selector, domain, record string) string {
	var parts []string
	for len(record) > 255 {
		parts = append(parts, record[:255])
		record = record[255:]
	}
	parts = append(parts, record)
	return RecordName(selector, domain) + ". 3600 IN TXT ( \"" + strings.Join(parts, "\"\n\t\"") + "\" )"
}
