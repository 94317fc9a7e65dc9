require ["fileinto", "copy", "envelope", "subaddress"];
if envelope :is "from" "sender@example.org" { fileinto :copy "e1"; }
if envelope :domain :is "from" "EXAMPLE.org" { fileinto :copy "e2"; }
if envelope :localpart :is "to" "me+tag" { fileinto :copy "e3"; }
if envelope :user :is "to" "me" { fileinto :copy "e4"; }
if envelope :detail :is "to" "tag" { fileinto :copy "e5"; }
if envelope :all :is "to" "me+tag@example.com" { fileinto :copy "e6"; }
if envelope :matches ["from", "to"] "me*" { fileinto :copy "e7"; }
if envelope :contains "from" "nobody" { fileinto :copy "e8"; }
