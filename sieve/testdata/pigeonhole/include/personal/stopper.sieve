require ["fileinto"];
if header :contains "subject" "weekly" { fileinto "stopped"; stop; }
