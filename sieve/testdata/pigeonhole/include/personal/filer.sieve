require ["include", "variables", "fileinto", "copy"];
global "folder";
fileinto :copy "filed-${folder}";
set "local" "x";
