require "include";
include "bad-self-include";