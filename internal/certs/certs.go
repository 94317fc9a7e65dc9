// Package certs holds the server's TLS key pair and reloads it on request
// (SIGHUP), so that a renewed certificate takes effect without a restart.
// Connections read the current pair through tls.Config.GetCertificate.
package certs

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
	"time"
)

// Store is a reloadable key pair.
type Store struct {
	certFile, keyFile string
	current           atomic.Pointer[tls.Certificate]
}

// Load reads the PEM certificate chain and key.
func Load(certFile, keyFile string) (*Store, error) {
	s := &Store{certFile: certFile, keyFile: keyFile}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again. On error the previous pair stays in use.
func (s *Store) Reload() error {
	c, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS key pair %s, %s: %w", s.certFile, s.keyFile, err)
	}
	s.current.Store(&c)
	return nil
}

// NotAfter is when the certificate in use expires (its first one, the
// server's own, for a chain), for the metrics: a renewal that did not
// happen, or was not reloaded, shows before clients refuse it.
func (s *Store) NotAfter() time.Time {
	if leaf := s.current.Load().Leaf; leaf != nil {
		return leaf.NotAfter
	}
	return time.Time{}
}

// Config returns a server configuration that always presents the current
// pair. TLS 1.2 is the minimum (RFC 8996 retired 1.0 and 1.1).
func (s *Store) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.current.Load(), nil
		},
	}
}
