package panics

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestRecover(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var r Recorder
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer r.Recover(log, "worker")
		panic("worker bug")
	}()
	<-done
	if r.Count() != 1 {
		t.Fatalf("Count = %d, want 1", r.Count())
	}
	out := buf.String()
	for _, want := range []string{"level=ERROR", "event=panic", "where=worker", "panic=\"worker bug\"", "panics_test.go"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if first := r.First(); len(first) != 1 || !strings.Contains(first[0], "panics_test.go") {
		t.Errorf("First = %q, want the panic with its stack", first)
	}
}

func TestLibraryLogger(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var r Recorder
	l := r.LibraryLogger(log, slog.LevelDebug, "imap", "panic handling command: ", "panic idling: ")
	l.Printf("failed to read command: %v", "EOF")
	if r.Count() != 0 {
		t.Fatalf("an ordinary message counted as a panic")
	}
	l.Printf("panic handling command: %v\n%s", "boom", "goroutine 1 [running]:\nmain.f()")
	l.Printf("panic idling: %v\n%s", "bang", "goroutine 2")
	if r.Count() != 2 {
		t.Fatalf("Count = %d, want 2", r.Count())
	}
	out := buf.String()
	for _, want := range []string{"level=DEBUG msg=\"failed to read command: EOF\"", "panic=boom", "main.f()", "panic=bang"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestNilRecorderLogs(t *testing.T) {
	var buf bytes.Buffer
	var r *Recorder
	r.Record(slog.New(slog.NewTextHandler(&buf, nil)), "x", "v")
	if !strings.Contains(buf.String(), "event=panic") || r.Count() != 0 {
		t.Errorf("nil Recorder: log %q, count %d", buf.String(), r.Count())
	}
}
