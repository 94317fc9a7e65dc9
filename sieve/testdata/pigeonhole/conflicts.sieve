require ["fileinto", "reject", "vacation"];
if header :contains "subject" "Hello" { fileinto "A"; reject "x"; }
if header :contains "subject" "weekly" { reject "x"; fileinto "A"; }
if header :contains "subject" "URGENT" { redirect "a@example.net"; reject "nope"; }
if header :contains "subject" "pills" { vacation "away"; vacation "again"; }
if header :contains "list-id" "announce" { reject "one"; reject "two"; }
