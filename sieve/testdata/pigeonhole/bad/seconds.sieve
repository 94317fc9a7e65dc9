require "vacation";
vacation :seconds 4 "x";