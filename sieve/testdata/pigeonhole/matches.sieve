require ["fileinto", "copy", "variables"];
if header :matches "subject" "*e*" { fileinto :copy "m1-${1}|${2}"; }
if header :matches "subject" "*o*o*" { fileinto :copy "m2-${1}|${2}|${3}"; }
if header :matches "subject" "?*?" { fileinto :copy "m3-${1}|${3}"; }
if header :matches "subject" "***" { fileinto :copy "m4-${1}|${2}|${3}"; }
if header :matches "from" "*\\**" { fileinto :copy "m5"; }
if header :matches "subject" "*10" { fileinto :copy "m6-${1}"; }
if header :matches "subject" "H*o W*d, *" { fileinto :copy "m7-${1}-${2}-${3}"; }
if header :comparator "i;octet" :matches "subject" "h*" { fileinto :copy "m8"; }
if header :matches "subject" "*Köln" { fileinto :copy "m9-${1}"; }
