require "regex";
if header :regex "a" ["x", "("] { }