keep; /* x
 y