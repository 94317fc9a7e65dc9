require ["vacation"];
if header :contains "subject" "Hello" { vacation :subject "Out of office" :days 3 "I am away."; }
if header :contains "subject" "weekly" { vacation "Away without subject"; }
if header :contains "subject" "URGENT" { vacation :addresses ["team@example.com"] :subject "Team away" "Away"; }
