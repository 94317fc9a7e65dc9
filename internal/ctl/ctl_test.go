package ctl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
	"mailroom/internal/panics"
)

func TestMain(m *testing.M) { mailtest.Main(m) }

func TestCallRoundTrip(t *testing.T) {
	dir, _ := os.MkdirTemp("", "ctl")
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "c.sock")

	if err := Call(context.Background(), path, "x", nil, nil, nil); !errors.Is(err, ErrNoServer) {
		t.Fatalf("Call with no server: %v", err)
	}

	var rec panics.Recorder // the panic below is on purpose
	s := NewServer(slog.New(slog.DiscardHandler), &rec)
	s.Handle("echo", func(ctx context.Context, args json.RawMessage, body io.Reader) (any, error) {
		var in struct{ Name string }
		json.Unmarshal(args, &in)
		b, err := io.ReadAll(body)
		return map[string]string{"name": in.Name, "body": string(b)}, err
	})
	s.Handle("fail", func(context.Context, json.RawMessage, io.Reader) (any, error) {
		return nil, &Error{Exit: 67, Msg: "no such user"}
	})
	s.Handle("boom", func(context.Context, json.RawMessage, io.Reader) (any, error) {
		panic("handler bug")
	})
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v, want 0600", fi.Mode().Perm())
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })

	ctx := context.Background()
	var out map[string]string
	if err := Call(ctx, path, "echo", map[string]string{"Name": "n"}, strings.NewReader("the body"), &out); err != nil {
		t.Fatal(err)
	}
	if out["name"] != "n" || out["body"] != "the body" {
		t.Fatalf("echo = %v", out)
	}
	var ce *Error
	if err := Call(ctx, path, "fail", nil, nil, nil); !errors.As(err, &ce) || ce.Exit != 67 || ce.Msg != "no such user" {
		t.Fatalf("fail = %v", err)
	}
	if err := Call(ctx, path, "nope", nil, nil, nil); err == nil || !strings.Contains(err.Error(), "unknown operation") {
		t.Fatalf("unknown op = %v", err)
	}
	// A panicking handler costs its caller an answer, not the server.
	if err := Call(ctx, path, "boom", nil, nil, nil); err == nil {
		t.Fatal("panic produced a success")
	}
	if rec.Count() != 1 {
		t.Errorf("%d panics recorded, want 1", rec.Count())
	}
	if err := Call(ctx, path, "echo", nil, nil, &out); err != nil {
		t.Fatalf("server dead after a handler panic: %v", err)
	}
}

// TestTruncatedBody: a client whose input breaks halfway must not make the
// server see a complete, shorter body.
func TestTruncatedBody(t *testing.T) {
	dir, _ := os.MkdirTemp("", "ctl")
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "c.sock")
	got := make(chan error, 1)
	s := NewServer(slog.New(slog.DiscardHandler), mailtest.Panics)
	s.Handle("take", func(_ context.Context, _ json.RawMessage, body io.Reader) (any, error) {
		_, err := io.ReadAll(body)
		got <- err
		return nil, err
	})
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })

	broken := io.MultiReader(strings.NewReader(strings.Repeat("x", 100000)), iotestErrReader{})
	if err := Call(context.Background(), path, "take", nil, broken, nil); err == nil {
		t.Fatal("Call with a broken body succeeded")
	}
	if err := <-got; err == nil {
		t.Fatal("the server read a truncated body as complete")
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("stdin broke") }

func FuzzChunkedReader(f *testing.F) {
	f.Add([]byte("3\nabc0\n"))
	f.Add([]byte("ffffffffff\nx"))
	f.Add([]byte("2\nab"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &chunkedReader{r: bufio.NewReader(bytes.NewReader(data))}
		io.Copy(io.Discard, r)
	})
}

// TestCloseBeforeServe: a Close that comes before Serve (a signal during
// startup) must not leave Serve accepting for ever.
func TestCloseBeforeServe(t *testing.T) {
	dir, _ := os.MkdirTemp("", "ctl")
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := NewServer(slog.New(slog.DiscardHandler), mailtest.Panics)
	s.Close()
	l, err := Listen(filepath.Join(dir, "c.sock"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running 10s after Close")
	}
}
