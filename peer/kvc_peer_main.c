/* kvc-peer: placeholder main until the daemon lands. */
#include <stdio.h>
int main(void)
{
    fputs("kvc-peer: not built yet\n", stderr);
    return 1;
}
