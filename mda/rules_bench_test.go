package mda_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"mailroom/mda"
)

// BenchmarkResolve is the per-RCPT cost of the rules: one stat of the
// aliases file, the alias lookup, the account lookup and an open of the
// .forward (absent), for a plain user and for an alias of three.
func BenchmarkResolve(b *testing.B) {
	var sb strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&sb, "list%d: alice, bob, carol\n", i)
	}
	sb.WriteString("team: alice, bob, carol\n")
	e := newRulesEnv(b, sb.String(), nil)
	for _, addr := range []string{"alice@example.org", "team@example.org", "alice+tag@example.org"} {
		b.Run(addr, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.MDA.Resolve(context.Background(), addr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkExpandLargeList: an alias of 5,000 local and remote members
// must cost time linear in its size.
func BenchmarkExpandLargeList(b *testing.B) {
	for _, n := range []int{500, 5000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var sb strings.Builder
			sb.WriteString("big: alice, bob, carol")
			for i := range n {
				fmt.Fprintf(&sb, ",\n  m%d@remote.example", i)
			}
			sb.WriteString("\n")
			e := newRulesEnv(b, sb.String(), nil)
			b.ReportAllocs()
			for b.Loop() {
				ctx := context.Background()
				txn, _ := e.MDA.Begin(ctx, "s@remote.example", mda.Info{Proto: "LMTP"})
				if err := txn.AddRcpt(ctx, "big@example.org"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
