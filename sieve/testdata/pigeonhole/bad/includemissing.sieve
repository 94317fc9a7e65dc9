require "include";
include "nonexistent";