require ["include", "variables", "fileinto", "copy"];
global "folder";
include "common";
include :once "filer";
include :once "filer";
include :global "spam";
include :optional "does-not-exist";
include "stopper";
if string "${local}" "" { fileinto :copy "local-not-shared"; }
fileinto :copy "after-${folder}";
