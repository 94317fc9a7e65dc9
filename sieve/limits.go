package sieve

// Limits bound what one script may cost, so that a hostile or careless
// script cannot stall deliveries for others or exhaust memory. Scripts
// have no loops (RFC 5228 §1), so the work of a run is bounded by the
// script's size and the message's; these limits make that bound small.
// The zero value of a field means its default.
type Limits struct {
	// MaxScriptSize bounds a script's source, in octets (default 1 MiB).
	MaxScriptSize int
	// MaxNesting bounds how deeply blocks and tests nest (default 32,
	// as Pigeonhole's).
	MaxNesting int
	// MaxIncludeDepth bounds chains of include (RFC 6609), default 10;
	// MaxIncludes the number of distinct scripts included (default 255).
	MaxIncludeDepth int
	MaxIncludes     int
	// MaxActions bounds the actions one run may take (default 32, as
	// Pigeonhole's sieve_max_actions); MaxRedirects the redirects among
	// them (default 4, sieve_max_redirects).
	MaxActions   int
	MaxRedirects int
	// MaxVariables bounds the variables of one script (default 255);
	// MaxVariableSize the value of one, which is truncated beyond it
	// (default 4096 octets; RFC 5229 §3 allows truncation). An expanded
	// string is truncated at 16 times that.
	MaxVariables    int
	MaxVariableSize int
	// MaxBodySize bounds how much of the body the body test (RFC 5173)
	// reads: the first octets of the raw body, or of the decoded text
	// parts together (default 1 MiB).
	MaxBodySize int
	// MaxCost bounds the work of one run, in units of about a
	// nanosecond of CPU time: octets compared, steps of :matches
	// patterns, regular expression instructions (default 100,000,000,
	// a fraction of a second). A run that reaches it fails, and the
	// message is kept. Regular expressions use Go's regexp package,
	// whose matching time is linear in the text (RE2: no backtracking),
	// so no pattern can take exponential time; the cost counts the text
	// times the size of the pattern's program, and the compilation of a
	// pattern built from variables. A pattern's program is at most 5,000
	// instructions and a script's constant patterns 50,000 together,
	// estimated before compiling (compilation grows faster than that).
	MaxCost int64
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxScriptSize, 1<<20)
	def(&l.MaxNesting, 32)
	def(&l.MaxIncludeDepth, 10)
	def(&l.MaxIncludes, 255)
	def(&l.MaxActions, 32)
	def(&l.MaxRedirects, 4)
	def(&l.MaxVariables, 255)
	def(&l.MaxVariableSize, 4096)
	def(&l.MaxBodySize, 1<<20)
	if l.MaxCost <= 0 {
		l.MaxCost = 100_000_000
	}
	return l
}
