/*
 * Replays the fuzz target's seed corpus (tests/fuzz/corpus.txt, one input a
 * line as "name hex") through LLVMFuzzerTestOneInput(), so that every build
 * the test suite runs (default, ASan+UBSan, TSan) checks the same inputs the
 * fuzzer starts from, with the same oracle: a wrong result aborts.
 *
 *   fuzz_replay CORPUS.txt
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_replay CORPUS.txt\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (f == NULL) {
        perror(argv[1]);
        return 2;
    }
    char line[4096];
    unsigned long n = 0, lineno = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        lineno++;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char *hex = strchr(line, ' ');
        if (hex == NULL) {
            fprintf(stderr, "%s:%lu: no input\n", argv[1], lineno);
            return 1;
        }
        *hex++ = '\0';
        uint8_t data[2048];
        size_t len = 0;
        while (hexval(hex[0]) >= 0 && hexval(hex[1]) >= 0 &&
               len < sizeof data) {
            data[len++] = (uint8_t)(hexval(hex[0]) * 16 + hexval(hex[1]));
            hex += 2;
        }
        if (*hex != '\n' && *hex != '\0') {
            fprintf(stderr, "%s:%lu: bad hex in '%s'\n", argv[1], lineno, line);
            return 1;
        }
        LLVMFuzzerTestOneInput(data, len);
        n++;
    }
    fclose(f);
    printf("fuzz_replay: %lu inputs replayed, none failed\n", n);
    return n > 0 ? 0 : 1;
}
