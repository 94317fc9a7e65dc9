require "encoded-character";
if header :is "a" "${unicode:D800}" { }