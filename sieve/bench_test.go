package sieve

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
)

// BenchmarkRun is one delivery's work: read the header of a 4 KiB
// message and run a realistic 50-rule script (bench/sieve.sh sets it
// next to Pigeonhole's sieve-test).
func BenchmarkRun(b *testing.B) {
	src, err := os.ReadFile("testdata/bench/rules50.sieve")
	if err != nil {
		b.Fatal(err)
	}
	raw, err := os.ReadFile("testdata/bench/msg4k.eml")
	if err != nil {
		b.Fatal(err)
	}
	s, err := Compile(src, Options{Name: "rules50"})
	if err != nil {
		b.Fatal(err)
	}
	msg := string(raw)
	b.ReportAllocs()
	for b.Loop() {
		m, err := ReadMessage(func() io.Reader { return strings.NewReader(msg) }, int64(len(msg)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Run(context.Background(), m, RunOptions{Envelope: testEnvelope}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	src, err := os.ReadFile("testdata/bench/rules50.sieve")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Compile(src, Options{Name: "rules50"}); err != nil {
			b.Fatal(err)
		}
	}
}
