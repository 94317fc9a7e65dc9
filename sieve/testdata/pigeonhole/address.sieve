require ["fileinto", "copy", "subaddress"];
if address :is "from" "alice.sender+news@example.org" { fileinto :copy "a1"; }
if address :localpart :is "from" "alice.sender+news" { fileinto :copy "a2"; }
if address :domain :is "from" "example.org" { fileinto :copy "a3"; }
if address :user :is "from" "alice.sender" { fileinto :copy "a4"; }
if address :detail :is "from" "news" { fileinto :copy "a5"; }
if address :detail :is "to" "" { fileinto :copy "a6"; }
if address :detail :matches "to" "*" { fileinto :copy "a7"; }
if address :all :comparator "i;octet" :is "from" "Alice.Sender+news@Example.ORG" { fileinto :copy "a8"; }
if address :domain :is ["to", "cc"] "example.com" { fileinto :copy "a9"; }
if address :is "to" "bob@example.net" { fileinto :copy "a10"; }
if address :is "cc" "other@example.com" { fileinto :copy "a11"; }
if address :localpart :is "from" "MAILER-DAEMON" { fileinto :copy "a12"; }
if address :domain :matches "from" "*.example.net" { fileinto :copy "a13"; }
if address :is "from" "spammer@bad.example" { fileinto :copy "a14"; }
if address :is "to" "me@example.com" { fileinto :copy "a15"; }
if address :contains "to" "undisclosed" { fileinto :copy "a16"; }
if address :user :is "cc" "me" { fileinto :copy "a17"; }
if address :detail :is "cc" "shopping" { fileinto :copy "a18"; }
if address :localpart :contains "sender" "owner-" { fileinto :copy "a19"; }
if address :all :matches "from" "*@*" { fileinto :copy "a20"; }
if address :domain :is "from" "EXAMPLE.DE" { fileinto :copy "a21"; }
if exists "to" { if not address :matches "to" "*@*" { fileinto :copy "a22"; } }
