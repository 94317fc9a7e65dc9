require ["fileinto", "copy", "variables"];
set "a" "Value";
set :lower "b" "MiXeD";
set :upper "c" "MiXeD";
set :lowerfirst "d" "ABC";
set :upperfirst "e" "abc";
set :length "f" "hello";
set :quotewildcard "g" "a*b?c\\d";
set :upper :lowerfirst "h" "mixed";
fileinto :copy "v-${a}-${b}-${c}-${d}-${e}-${f}";
if string :is "${g}" "a\\*b\\?c\\\\d" { fileinto :copy "v-quote"; }
if string :is "${h}" "mIXED" { fileinto :copy "v-prec"; }
if header :matches "subject" "*, * at *" { fileinto :copy "v-m-${1}-${2}-${3}"; }
if header :matches "from" "*<*@*>" { fileinto :copy "v-from-${2}-${3}"; }
if header :matches "subject" "??*" { fileinto :copy "v-q-${1}${2}-${0}"; }
if string :count "eq" ["a", "", "b"] "2" { fileinto :copy "v-count"; }
if string :matches "${unknown}x" "x" { fileinto :copy "v-unknown"; }
set "n" "${a}${a}";
if string "${n}" "ValueValue" { fileinto :copy "v-concat"; }
if header :matches "x-spam-score" "*" { set "score" "${1}"; }
if string :value "gt" :comparator "i;ascii-numeric" "${score}" "50" { fileinto :copy "v-spam"; }
if header :matches "subject" "*[*]*" { fileinto :copy "v-br-${2}"; }
set "x" "${1}";
if string :is "${x}" "" { fileinto :copy "v-empty1"; }
if string "${ unknown }" "${ unknown }" { fileinto :copy "v-literal"; }
