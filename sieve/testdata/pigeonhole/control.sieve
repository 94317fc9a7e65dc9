require ["fileinto"];
if anyof (header :contains "subject" "nothing", header :contains "subject" "Hello") { fileinto "c1"; }
elsif allof (exists "from", exists "x-spam-flag") { fileinto "c2"; }
elsif size :over 600 { fileinto "c3"; }
elsif size :under 100 { fileinto "c4"; }
elsif not exists ["date", "message-id"] { fileinto "c5"; }
elsif allof (true, not false) { fileinto "c6"; }
else { fileinto "c7"; }
if anyof (false) { fileinto "never"; }
if size :over 1K { fileinto "big"; }
