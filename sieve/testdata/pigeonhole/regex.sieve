require ["fileinto", "copy", "regex", "variables"];
if header :regex "subject" "^hello" { fileinto :copy "x1"; }
if header :regex :comparator "i;octet" "subject" "^hello" { fileinto :copy "x2"; }
if header :regex "subject" "[0-9]+\\.[0-9]+\\.[0-9]+" { fileinto :copy "x3"; }
if header :regex "subject" "^\\[([a-z]+)\\] (.*)$" { fileinto :copy "x4-${1}"; }
if header :regex "from" "(.+)@(.+)" { fileinto :copy "x5-${2}"; }
if header :regex "x-spam-score" "^[0-9]{2,}$" { fileinto :copy "x6"; }
if header :regex "subject" "(a|b)*c" { fileinto :copy "x7"; }
if header :regex "subject" "meeting|release" { fileinto :copy "x8"; }
if header :regex "subject" "[[:upper:]]{5}" { fileinto :copy "x9"; }
if header :regex "subject" "^(R|r)e" { fileinto :copy "x10"; }
if header :regex "message-id" "^<([^@]+)@" { fileinto :copy "x11-${1}"; }
