package sieve

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestCompileErrors checks that bad scripts are refused with the place
// of the problem: line and column, counted in characters.
func TestCompileErrors(t *testing.T) {
	deep := strings.Repeat("if true {", 40) + strings.Repeat("}", 40)
	cases := []struct {
		name, src, pos, msg string
	}{
		{"missing semicolon", "keep", "1:5", "expected ';' or '{' after command keep"},
		{"unclosed block", "if true {\n  keep;\n", "3:1", "expected a command or '}'"},
		{"extension not required", "fileinto \"x\";", "1:1", `fileinto needs require "fileinto"`},
		{"unknown extension", `require ["fileinto", "foo"];`, "1:22", `unsupported extension "foo"`},
		{"Pigeonhole's editheader", `require ["editheader"];`, "1:10", `unsupported extension "editheader"`},
		{"enotify", "require [\"fileinto\",\n  \"enotify\"];", "2:3", `unsupported extension "enotify"`},
		{"an unknown comparator", `require "comparator-i;unicode-casemap";`, "1:9", `unsupported extension "comparator-i;unicode-casemap"`},
		{"require after command", "keep;\nrequire \"fileinto\";", "2:1", "require must come before"},
		{"require in block", "if true { require \"fileinto\"; }", "1:11", "only allowed at the top"},
		{"missing key list", `if header :is "a" { keep; }`, "1:4", "header: expected 1 more argument"},
		{"unterminated string", "keep;\n\"abc", "2:1", "unterminated string"},
		{"unterminated comment", "keep; /* x\n y", "1:7", "unterminated comment"},
		{"bad number", "if size :over 10X { }", "1:17", "unexpected 'X' after a number"},
		{"number overflow", "if size :over 99999999999999999999 { }", "1:15", "number too large"},
		{"quantified overflow", "if size :over 9999999999999G { }", "1:15", "number too large"},
		{"empty test list", "if anyof() { }", "1:10", "expected a test but found ')'"},
		{"elsif alone", "elsif true { }", "1:1", "elsif without a preceding if"},
		{"else args", "if true { } else true { }", "1:13", "else takes no arguments"},
		{"unknown comparator", `if header :comparator "i;foo" :is "a" "b" { }`, "1:23", `unknown comparator "i;foo"`},
		{"numeric needs require", `if header :comparator "i;ascii-numeric" :is "a" "b" { }`, "1:23", `needs require "comparator-i;ascii-numeric"`},
		{"numeric contains", "require \"comparator-i;ascii-numeric\";\nif header :contains :comparator \"i;ascii-numeric\" \"a\" \"b\" { }", "2:11", "cannot be used with :contains"},
		{"bad regex", "require \"regex\";\nif header :regex \"a\" [\"x\", \"(\"] { }", "2:28", "invalid regular expression"},
		{"regex not required", `if header :regex "a" "b" { }`, "1:11", `:regex needs require "regex"`},
		{"two match types", `if header :is :contains "a" "b" { }`, "1:15", "more than one match type"},
		{"unknown tag", `if header :foo "a" "b" { }`, "1:11", "unknown tag :foo"},
		{"nesting", deep, "1:297", "blocks nested deeper than 32"},
		{"not nesting", "if " + strings.Repeat("not ", 40) + "true { }", "1:", "nested deeper than 32"},
		{"text unterminated", "require \"vacation\";\nvacation text:\nhello\n", "2:10", "unterminated text: string"},
		{"stop args", "stop 1;", "1:6", "stop takes no arguments"},
		{"if without block", "if true;", "1:1", "if needs a block"},
		{"unknown command", "frobnicate;", "1:1", `unknown command "frobnicate"`},
		{"unknown test", "if frob { }", "1:4", `unknown test "frob"`},
		{"column counts characters", `if header :is "ü" "x" 5 { }`, "1:23", "too many arguments"},
		{"copy not required", "require \"fileinto\";\nfileinto :copy \"x\";", "2:10", `:copy needs require "copy"`},
		{"set without variables", `set "a" "b";`, "1:1", `set needs require "variables"`},
		{"namespace", "require \"variables\";\nset \"a.b\" \"c\";", "2:5", "namespaces are not supported"},
		{"namespace reference", "require \"variables\";\nif string \"${x.y}\" \"\" { }", "2:11", "namespace"},
		{"match index", "require \"variables\";\nif string \"${33}\" \"\" { }", "2:11", "out of range"},
		{"bad unicode", "require \"encoded-character\";\nif header :is \"a\" \"${unicode:D800}\" { }", "2:19", "names no Unicode character"},
		{"redirect address", `redirect "not an address";`, "1:10", "invalid address"},
		{"seconds not required", "require \"vacation\";\nvacation :seconds 4 \"x\";", "2:10", `:seconds needs require "vacation-seconds"`},
		{"days and seconds", "require \"vacation-seconds\";\nvacation :days 1 :seconds 4 \"x\";", "2:18", "more than one :days or :seconds"},
		{"include name", "require \"include\";\ninclude \"a/b\";", "2:9", "invalid script name"},
		{"include no loader", "require \"include\";\ninclude \"a\";", "2:9", "no scripts can be included"},
		{"relational op", "require \"relational\";\nif header :value \"xx\" \"a\" \"b\" { }", "2:18", "unknown relational operator"},
		{"envelope part", "require \"envelope\";\nif envelope \"cc\" \"x\" { }", "2:13", `unknown envelope part "cc"`},
		{"header name", `if header :is "bad name" "x" { }`, "1:15", "invalid header field name"},
		{"string not list", "require \"fileinto\";\nfileinto [\"a\", \"b\"];", "2:10", "must be a string, not a string list"},
		{"modifier precedence", "require \"variables\";\nset :lower :upper \"a\" \"b\";", "2:12", "same precedence"},
		{"string list end", `if header :is ["a" "b"] "x" { }`, "1:20", "expected ',' or ']'"},
		{"invalid utf-8", "if header :is \"a\" \"\xff\" { }", "1:19", "not valid UTF-8"},
		{"global needs variables", "require \"include\";\nglobal \"x\";", "2:1", `global needs require "variables"`},
		{"empty fileinto", "require \"fileinto\";\nfileinto \"\";", "2:10", "empty mailbox name"},
		{"size without tag", "if size 10 { }", "1:4", "size needs :over or :under"},
		{"flags not required", "keep :flags \"x\";", "1:6", `:flags needs require "imap4flags"`},
		{"return not required", "return;", "1:1", `return needs require "include"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile([]byte(c.src), Options{Name: "s"})
			if err == nil {
				t.Fatalf("compiled:\n%s", c.src)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if !strings.HasPrefix(e.Pos.String(), c.pos) {
				t.Errorf("position %s, want %s (%v)", e.Pos, c.pos, err)
			}
			if !strings.Contains(e.Msg, c.msg) {
				t.Errorf("message %q, want it to contain %q", e.Msg, c.msg)
			}
			if !strings.HasPrefix(err.Error(), "s:"+e.Pos.String()+": ") {
				t.Errorf("Error() = %q, want it to start with the script name and place", err.Error())
			}
		})
	}
}

// TestCompileValid checks scripts that must compile, among them the
// examples of the RFCs.
func TestCompileValid(t *testing.T) {
	for _, src := range []string{
		"",
		"# only a comment",
		"/* a\nmultiline comment */ keep;",
		"keep;",
		"KEEP;",
		"if true { } elsif false { } else { }",
		"if true {}",
		`if header :is "X-Caffeine" "" { keep; }`,
		"require [\"fileinto\"];\nif size :over 100k { fileinto \"big\"; }",
		"require \"vacation\";\nvacation text:\nI'm away\n..dots\n.\n;",
		"require \"vacation\";\nvacation text: # comment\nx\n.\n;",
		"require [\"variables\"];\nset \"a\" \"${\";\nset \"b\" \"${}\";\nset \"c\" \"${a\";",
		"require [\"variables\"];\nset \"A\" \"x\"; if string \"${a}\" \"x\" { }",
		"if not not true { }",
		"if anyof (true, allof (false, true)) { }",
		"require \"relational\";\nif header :count \"ge\" \"received\" \"2\" { }",
		"require [\"regex\", \"variables\"];\nset \"p\" \"(\";\nif header :regex \"a\" \"${p}\" { }",
		"require [\"imap4flags\", \"variables\"];\nif hasflag \"v\" \"x\" { }",
		"require [\"include\", \"variables\"];\nglobal [\"a\", \"b\"];\nreturn;",
		"require \"duplicate\";\nif duplicate :seconds 60 :header \"x-id\" :handle \"h\" :last { }",
		"require [\"mailbox\", \"fileinto\"];\nif mailboxexists \"Junk\" { fileinto :create \"Junk\"; }",
		"require \"date\";\nif currentdate :zone \"+0100\" \"hour\" \"12\" { }",
		"require \"encoded-character\";\nif header :is \"a\" \"${hex:\" { }",
		// RFC 5228 §9 (the example script, with its extensions).
		`require ["fileinto"];
if header :is "Sender" "owner-ietf-mta-filters@imc.org" {
        fileinto "filter";  # move to "filter" mailbox
}
elsif address :DOMAIN :is ["From", "To"] "example.com" {
        keep;               # keep in "In" mailbox
}
elsif anyof (NOT address :all :contains ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject" ["*make*money*fast*", "*university*dipl*mas*"]) {
        fileinto "spam";   # move to "spam" mailbox
}
else {
        # Move all other (non-company) mail to "personal"
        # mailbox.
        fileinto "personal";
}`,
		// RFC 5229 §3.2 examples.
		`require ["fileinto", "variables"];
if header :matches "List-ID" "*<*@*" {
    fileinto "INBOX.lists.${2}"; stop;
}
# Imagine the header
# Subject: [acme-users] [fwd] version 1.0 is out
if header :matches "Subject" "[*] *" {
    # ${1} will hold "acme-users",
    # ${2} will hold "[fwd] version 1.0 is out"
    fileinto "INBOX.lists.${1}"; stop;
}
# Imagine the header
# To: coyote@ACME.Example.COM
if address :matches ["To", "Cc"] ["coyote@**.com",
        "wile@**.com"] {
    # ${0} is the matching address
    # ${1} is always the empty string
    # ${2} is part of the domain name ("ACME.Example")
    fileinto "INBOX.business.${2}"; stop;
} else {
    # Control wouldn't reach this block if any match was
    # successful, so no match variables are set at this
    # point.
}
if anyof (true, address :domain :matches "To" "*.com") {
    # The second test is never evaluated, so there are
    # still no match variables set.
    stop;
}`,
		// RFC 5230 §4.x examples.
		`require "vacation";
if header :contains "subject" "cyrus" {
    vacation "I'm out -- send mail to cyrus-bugs";
} else {
    vacation "I'm out -- call me at +1 304 555 0123";
}`,
		`require ["vacation", "variables"];
if header :matches "subject" "*" {
    vacation :subject "Automatic response to: ${1}"
             "I'm away";
}`,
		`require "vacation";
vacation :days 23 :addresses ["tjs@example.edu",
                              "ts4z@landru.example.edu"]
   "I'm away until October 19.
   If it's an emergency, call 911, I guess." ;`,
		`require "vacation";
if header :contains "from" "boss@example.edu" {
    redirect "pleeb@isp.example.org";
} else {
    vacation "Sorry, I'm away, I'll read your
message when I get around to it.";
}`,
		`require "vacation";
vacation :mime text:
Content-Type: multipart/alternative; boundary=foo

--foo

I'm at the beach relaxing.  Mmmm, surf...

--foo
Content-Type: text/html; charset=us-ascii

<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.0//EN"
 "http://www.w3.org/TR/REC-html40/strict.dtd">
<HTML><HEAD><TITLE>How to relax</TITLE>
<BASE HREF="http://home.example.com/pictures/"></HEAD>
<BODY><P>I'm at the <A HREF="beach.gif">beach</A> relaxing.
Mmmm, <A HREF="ocean.gif">surf</A>...
</BODY></HTML>

--foo--
.
;`,
	} {
		if _, err := Compile([]byte(src), Options{Name: "s"}); err != nil {
			t.Errorf("%v\n%s", err, src)
		}
	}
}

func TestScriptSizeLimit(t *testing.T) {
	src := "keep;" + strings.Repeat(" ", 100)
	_, err := Compile([]byte(src), Options{Limits: Limits{MaxScriptSize: 50}})
	if err == nil || !strings.Contains(err.Error(), "limit of 50") {
		t.Fatalf("err = %v, want the size limit", err)
	}
}

// TestExtensions checks that every extension issue 15 lists is offered
// (and so announced over ManageSieve) and that each offered one can be
// required.
func TestExtensions(t *testing.T) {
	listed := []string{"fileinto", "reject", "ereject", "envelope", "encoded-character", "comparator-i;ascii-numeric",
		"relational", "regex", "variables", "subaddress", "body", "date", "include", "duplicate", "mailbox", "copy",
		"imap4flags", "vacation", "vacation-seconds"}
	offered := Extensions()
	for _, e := range listed {
		if !slices.Contains(offered, e) {
			t.Errorf("%q is not offered", e)
		}
	}
	for _, e := range offered {
		if _, err := Compile([]byte(`require "`+e+`";`), Options{}); err != nil {
			t.Errorf("require %q: %v", e, err)
		}
	}
}
