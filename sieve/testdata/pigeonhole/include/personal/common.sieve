require ["include", "variables", "fileinto"];
global "folder";
if header :contains "subject" "Hello" { set "folder" "from-common"; return; }
set "folder" "common-default";
