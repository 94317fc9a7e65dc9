require ["fileinto", "copy", "date", "relational", "variables"];
if date :zone "+0000" "date" "year" "2024" { fileinto :copy "d1"; }
if date :zone "+0000" "date" "hour" "12" { fileinto :copy "d2"; }
if date :originalzone "date" "hour" "13" { fileinto :copy "d3"; }
if date :originalzone "date" "zone" "+0100" { fileinto :copy "d4"; }
if date :zone "-0500" "date" "date" "2024-03-10" { fileinto :copy "d5"; }
if date :zone "+0000" "date" "weekday" "0" { fileinto :copy "d6"; }
if date :value "ge" :zone "+0000" "date" "date" "2024-03-06" { fileinto :copy "d7"; }
if date :zone "+0000" :matches "date" "iso8601" "*" { fileinto :copy "d8-${1}"; }
if date :zone "+0200" :matches "date" "std11" "*" { fileinto :copy "d9-${1}"; }
if date :zone "+0000" :matches "date" "julian" "*" { fileinto :copy "d10-${1}"; }
if date :originalzone :matches "date" "time" "*" { fileinto :copy "d11-${1}"; }
if date :zone "+0000" "date" "month" "02" { fileinto :copy "d12"; }
if exists "date" { if not date :zone "+0000" :matches "date" "year" "*" { fileinto :copy "d13"; } }
