require "comparator-i;ascii-numeric";
if header :contains :comparator "i;ascii-numeric" "a" "b" { }