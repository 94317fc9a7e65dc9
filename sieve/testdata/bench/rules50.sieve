require ["fileinto", "imap4flags", "variables", "envelope", "relational", "comparator-i;ascii-numeric", "regex", "body", "subaddress", "mailbox"];

if header :contains "list-id" "golang-nuts" { fileinto :create "Lists/golang-nuts"; stop; }
if header :contains "list-id" "debian-devel" { fileinto :create "Lists/debian-devel"; stop; }
if header :contains "list-id" "postfix-users" { fileinto :create "Lists/postfix-users"; stop; }
if header :contains "list-id" "dovecot" { fileinto :create "Lists/dovecot"; stop; }
if header :contains "list-id" "linux-kernel" { fileinto :create "Lists/linux-kernel"; stop; }
if header :contains "list-id" "rust-users" { fileinto :create "Lists/rust-users"; stop; }
if header :contains "list-id" "python-dev" { fileinto :create "Lists/python-dev"; stop; }
if header :contains "list-id" "nginx" { fileinto :create "Lists/nginx"; stop; }
if header :contains "list-id" "freebsd-hackers" { fileinto :create "Lists/freebsd-hackers"; stop; }
if header :contains "list-id" "openbsd-tech" { fileinto :create "Lists/openbsd-tech"; stop; }
if address :is "from" "boss@corp.example" { fileinto "From/boss"; stop; }
if address :is "from" "hr@corp.example" { fileinto "From/hr"; stop; }
if address :is "from" "alerts@monitoring.example" { fileinto "From/alerts"; stop; }
if address :is "from" "noreply@github.com" { fileinto "From/noreply"; stop; }
if address :is "from" "billing@isp.example" { fileinto "From/billing"; stop; }
if address :is "from" "newsletter@shop.example" { fileinto "From/newsletter"; stop; }
if address :is "from" "friend@mail.example" { fileinto "From/friend"; stop; }
if address :is "from" "family@home.example" { fileinto "From/family"; stop; }
if address :is "from" "bank@bank.example" { fileinto "From/bank"; stop; }
if address :is "from" "travel@airline.example" { fileinto "From/travel"; stop; }
if address :domain :is "from" "facebookmail.com" { fileinto "Social"; stop; }
if address :domain :is "from" "linkedin.com" { fileinto "Social"; stop; }
if address :domain :is "from" "twitter.com" { fileinto "Social"; stop; }
if address :domain :is "from" "amazon.com" { fileinto "Social"; stop; }
if address :domain :is "from" "paypal.com" { fileinto "Social"; stop; }
if address :domain :is "from" "ebay.com" { fileinto "Social"; stop; }
if address :domain :is "from" "booking.com" { fileinto "Social"; stop; }
if address :domain :is "from" "uber.com" { fileinto "Social"; stop; }
if address :domain :is "from" "slack.com" { fileinto "Social"; stop; }
if address :domain :is "from" "zoom.us" { fileinto "Social"; stop; }
if header :contains "subject" "invoice" { addflag "$label-invoice"; }
if header :contains "subject" "receipt" { addflag "$label-receipt"; }
if header :contains "subject" "order confirmation" { addflag "$label-order-confirmation"; }
if header :contains "subject" "shipping" { addflag "$label-shipping"; }
if header :contains "subject" "password reset" { addflag "$label-password-reset"; }
if header :contains "subject" "security alert" { addflag "$label-security-alert"; }
if header :contains "subject" "meeting" { addflag "$label-meeting"; }
if header :contains "subject" "webinar" { addflag "$label-webinar"; }
if header :contains "subject" "newsletter" { addflag "$label-newsletter"; }
if header :contains "subject" "unsubscribe" { addflag "$label-unsubscribe"; }
if header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "10" { fileinto "Junk"; stop; }
if header :contains "x-spam-flag" "yes" { fileinto "Junk"; stop; }
if header :regex "subject" "^\\[(urgent|important)\\]" { addflag "\\Flagged"; }
if envelope :detail "to" "shopping" { fileinto "Shopping"; stop; }
if header :matches "subject" "*[*]*" { set "tag" "${2}"; }
if anyof (header :contains "to" "team@corp.example", header :contains "cc" "team@corp.example") { fileinto "Team"; stop; }
if allof (header :contains "from" "calendar", header :contains "subject" "invitation") { fileinto "Calendar"; stop; }
if exists "x-mailer-bulk" { fileinto "Bulk"; stop; }
if size :over 10M { fileinto "Large"; stop; }
if not exists "message-id" { fileinto "Junk"; stop; }
