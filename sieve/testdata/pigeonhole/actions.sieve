require ["fileinto", "copy", "reject"];
if header :contains "subject" "weekly" { redirect "deals@example.net"; redirect :copy "archive@example.net"; }
if header :contains "subject" "Hello" { fileinto "Meetings"; fileinto "Meetings"; keep; }
if header :contains "subject" "pills" { discard; stop; }
if address :is "from" "bob@example.net" { reject "I do not want mail from you."; }
if header :contains "list-id" "announce" { fileinto "Lists"; stop; fileinto "Never"; }
if header :contains "subject" "Undelivered" { discard; keep; }
