require ["fileinto", "copy", "encoded-character"];
if header :contains "subject" "${hex:48 65 6c 6c 6f}" { fileinto :copy "ec1"; }
if header :contains "subject" "${unicode:00FC}" { fileinto :copy "ec2"; }
if header :contains "subject" "${hex:}" { fileinto :copy "ec3"; }
if header :contains "subject" "${HEX: 5b}" { fileinto :copy "ec4"; }
fileinto :copy "x${hex:41}y${unknown:41}z";
