require ["fileinto", "copy", "relational", "comparator-i;ascii-numeric"];
if header :value "gt" :comparator "i;ascii-numeric" "x-spam-score" "10" { fileinto :copy "r1"; }
if header :value "lt" :comparator "i;ascii-numeric" "x-spam-score" "5" { fileinto :copy "r2"; }
if header :value "ge" :comparator "i;ascii-numeric" "x-priority" "3" { fileinto :copy "r3"; }
if header :value "eq" :comparator "i;ascii-numeric" "x-spam-score" "099" { fileinto :copy "r4"; }
if header :value "ne" :comparator "i;ascii-numeric" "x-spam-score" "12" { fileinto :copy "r5"; }
if header :value "gt" "x-spam-score" "5" { fileinto :copy "r6"; }
if header :value "le" "subject" "M" { fileinto :copy "r7"; }
if header :count "ge" :comparator "i;ascii-numeric" "x-header" "2" { fileinto :copy "r8"; }
if address :count "eq" :comparator "i;ascii-numeric" ["to", "cc"] "3" { fileinto :copy "r9"; }
if address :count "gt" :comparator "i;ascii-numeric" ["to", "cc"] "1" { fileinto :copy "r10"; }
if header :count "eq" :comparator "i;ascii-numeric" "received" "0" { fileinto :copy "r11"; }
if header :value "gt" :comparator "i;ascii-numeric" "subject" "5" { fileinto :copy "r12"; }
if header :is :comparator "i;ascii-numeric" "x-priority" "3" { fileinto :copy "r13"; }
if header :value "lt" :comparator "i;octet" "from" "c" { fileinto :copy "r14"; }
if header :count "lt" "x-header" "10" { fileinto :copy "r15"; }
