#include <stdio.h>
#include "dacl/version.h"
int main(void) { printf("dacld %s\n", DACL_VERSION); return 0; }
