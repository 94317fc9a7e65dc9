require ["fileinto", "copy"];
if header :is "subject" "Hello World, meeting at 10" { fileinto :copy "h1"; }
if header :is "Subject" "hello world, MEETING at 10" { fileinto :copy "h2"; }
if header :comparator "i;octet" :is "subject" "hello world, meeting at 10" { fileinto :copy "h3"; }
if header :contains "subject" "meeting" { fileinto :copy "h4"; }
if header :contains ["to", "cc"] "carol" { fileinto :copy "h5"; }
if header :matches "subject" "*World*" { fileinto :copy "h6"; }
if header :matches "subject" "hello?world*" { fileinto :copy "h7"; }
if header :matches "subject" "[announce]*" { fileinto :copy "h8"; }
if header :contains "x-nonexistent" "" { fileinto :copy "h9"; }
if header :contains "subject" "" { fileinto :copy "h10"; }
if header :is "x-empty" "" { fileinto :copy "h11"; }
if header :contains "x-header" "second" { fileinto :copy "h12"; }
if header :is "subject" "Grüße aus Köln" { fileinto :copy "h13"; }
if header :contains "from" "Jörg" { fileinto :copy "h14"; }
if header :is "subject" "CHEAP pills and more    stuff" { fileinto :copy "h15"; }
if header :matches "subject" "*pills and*" { fileinto :copy "h16"; }
if header :contains "received" "mx.example.org" { fileinto :copy "h17"; }
if header :matches "subject" "\\[announce\\]*" { fileinto :copy "h18"; }
if header :matches "subject" "*" { fileinto :copy "h19"; }
if header :matches "subject" "" { fileinto :copy "h20"; }
if header :comparator "i;octet" :contains "subject" "CHEAP" { fileinto :copy "h21"; }
if header :contains "from" "spam comment" { fileinto :copy "h22"; }
if header :matches "x-spam-score" "??" { fileinto :copy "h23"; }
if header :matches "date" "*, * Mar 2024 *" { fileinto :copy "h24"; }
if not header :contains "subject" ["deals", "release"] { fileinto :copy "h25"; }
