keep;
"abc