/* kvc: placeholder main until the daemon lands. */
#include <stdio.h>
int main(void)
{
    fputs("kvc: not built yet\n", stderr);
    return 1;
}
