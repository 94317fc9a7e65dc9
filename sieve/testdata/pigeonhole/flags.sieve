require ["fileinto", "imap4flags", "variables", "relational", "comparator-i;ascii-numeric"];
if header :contains "subject" "URGENT" { addflag "\\Flagged"; addflag ["\\Seen", "urgent"]; }
if hasflag "\\flagged" { fileinto :flags "$Label1" "Urgent"; }
if header :contains "from" "spammer" { setflag "\\Deleted junk"; }
removeflag "urgent";
if hasflag :count "ge" :comparator "i;ascii-numeric" "2" { addflag "many"; }
if hasflag :matches "j*" { addflag "matched"; }
set "myflags" "";
addflag "myflags" ["a", "b", "a"];
removeflag "myflags" "b";
if hasflag "myflags" "a" { addflag "var-ok"; }
if hasflag :contains "myflags" "b" { addflag "var-bad"; }
if header :contains "subject" "meeting" { keep :flags ["\\Answered", "kept"]; }
