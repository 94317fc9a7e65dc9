keep;
require "fileinto";