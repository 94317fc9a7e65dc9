require ["fileinto", "copy", "body"];
if body :contains "meeting" { fileinto :copy "b1"; }
if body :raw :contains "QmlnIFNBTEUg" { fileinto :copy "b2"; }
if body :text :contains "SAVE10" { fileinto :copy "b3"; }
if body :content "text/html" :contains "unsubscribe" { fileinto :copy "b4"; }
if body :content "text" :contains "SALE" { fileinto :copy "b5"; }
if body :content "message/delivery-status" :contains "5.1.1" { fileinto :copy "b6"; }
if body :contains "Grüße" { fileinto :copy "b7"; }
if body :raw :contains "Gr=C3=BC" { fileinto :copy "b8"; }
if body :matches "*FREE*" { fileinto :copy "b9"; }
if body :content "text/plain" :is "short\n" { fileinto :copy "b10"; }
if body :contains "not in any body" { fileinto :copy "b11"; }
if body :content "image" :contains "" { fileinto :copy "b12"; }
