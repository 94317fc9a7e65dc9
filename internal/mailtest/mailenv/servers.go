package mailenv

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/internal/mailtest"
	"mailroom/lmtp"
	"mailroom/smtp"
)

// StartLMTP serves LMTP for env in-process on 127.0.0.1:0 and on a unix
// socket in env.Dir, and returns the server and both addresses. It is
// shut down at cleanup.
func StartLMTP(t testing.TB, env *Env, opts lmtp.Options) (srv *lmtp.Server, tcpAddr, unixPath string) {
	t.Helper()
	if opts.Hostname == "" {
		opts.Hostname = "mx.test"
	}
	opts.Deliverer = env.MDA
	if opts.Panics == nil {
		opts.Panics = mailtest.Panics
	}
	srv = lmtp.New(opts)
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unixPath = filepath.Join(env.Dir, "lmtp.sock")
	ul, err := net.Listen("unix", unixPath)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	for _, l := range []net.Listener{tl, ul} {
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, gosmtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				t.Errorf("Serve: %v", err)
			}
			done <- struct{}{}
		}()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		<-done
	})
	return srv, tl.Addr().String(), unixPath
}

// StartSMTP serves SMTP for env in-process on 127.0.0.1:0 (and, when
// opts.TLS is set, implicit TLS on a second port) and returns the plain
// and TLS addresses. It is shut down at cleanup.
func StartSMTP(t testing.TB, env *Env, opts smtp.Options) (plain, implicitTLS string) {
	t.Helper()
	if opts.Hostname == "" {
		opts.Hostname = "mx.test"
	}
	if opts.Deliverer == nil {
		opts.Deliverer = env.MDA
	}
	if opts.Accounts == nil {
		opts.Accounts = env.Accounts
	}
	if opts.Panics == nil {
		opts.Panics = mailtest.Panics
	}
	srv := smtp.New(opts)
	serve := func(l net.Listener, fn func(net.Listener) error, done chan struct{}) {
		go func() {
			if err := fn(l); err != nil && !errors.Is(err, gosmtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				t.Errorf("Serve: %v", err)
			}
			close(done)
		}()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done1, done2 := make(chan struct{}), make(chan struct{})
	serve(l, srv.Serve, done1)
	plain = l.Addr().String()
	if opts.TLS != nil {
		lt, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		serve(lt, srv.ServeTLS, done2)
		implicitTLS = lt.Addr().String()
	} else {
		close(done2)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done1
		<-done2
	})
	return plain, implicitTLS
}
