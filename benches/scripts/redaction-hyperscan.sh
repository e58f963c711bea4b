#!/usr/bin/env bash
# A reference point for the redaction bench: Hyperscan (Debian's libhyperscan, a multi-pattern regex
# engine built for this) compiled with the same rules the engine runs under any key, scanning the same
# corpus. It reports MiB/s of thread CPU time for the corpus as one buffer (values joined by NUL bytes)
# and value by value, every rule in one database with HS_FLAG_SINGLEMATCH (it stops each rule at its
# first match: it only has to say which rules match, the least a scan can do).
#
# Usage: benches/scripts/redaction-hyperscan.sh
# Needs: the redaction bench binary (built here by `cargo bench --no-run`), gcc, and libhyperscan-dev
# (installed here with apt-get when missing; Hyperscan needs x86_64 with SSSE3).
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! [ -e /usr/include/hs/hs.h ]; then
    apt-get install -y libhyperscan-dev >/dev/null
fi
bench=$(cargo bench --workspace --bench redaction --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*redaction-[^"]*\)".*/\1/p' | tail -1)
REDACTION_DUMP="$work" "$bench" --bench

cat >"$work/hs.c" <<'EOF'
#include <hs/hs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
                    void *ctx) {
    ((unsigned long *)ctx)[id]++;
    return 0;
}

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    char path[4096], line[8192];
    const char *pats[256];
    unsigned flags[256], ids[256], n = 0;
    snprintf(path, sizeof path, "%s/patterns.tsv", argv[1]);
    FILE *f = fopen(path, "r");
    while (n < 256 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *tab = strchr(line, '\t');
        *tab = 0;
        flags[n] = HS_FLAG_SINGLEMATCH | (atoi(line) ? HS_FLAG_CASELESS : 0);
        pats[n] = strdup(tab + 1);
        ids[n] = n;
        n++;
    }
    fclose(f);
    hs_database_t *db;
    hs_compile_error_t *err;
    if (hs_compile_multi(pats, flags, ids, n, HS_MODE_BLOCK, NULL, &db, &err) != HS_SUCCESS) {
        fprintf(stderr, "pattern %d: %s\n", err->expression, err->message);
        return 1;
    }
    snprintf(path, sizeof path, "%s/values.bin", argv[1]);
    f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(len);
    if (fread(buf, 1, len, f) != (size_t)len) return 1;
    fclose(f);
    long values = 1, bytes = len;
    for (long i = 0; i < len; i++) values += buf[i] == 0;
    bytes -= values - 1;
    hs_scratch_t *scratch = NULL;
    hs_alloc_scratch(db, &scratch);
    unsigned long hits[256] = {0};
    const int rounds = 20;
    double t = cpu_seconds();
    for (int r = 0; r < rounds; r++) hs_scan(db, buf, len, 0, scratch, on_match, hits);
    double one = (cpu_seconds() - t) / rounds;
    t = cpu_seconds();
    for (int r = 0; r < rounds; r++) {
        long start = 0;
        for (long i = 0; i <= len; i++) {
            if (i == len || buf[i] == 0) {
                hs_scan(db, buf + start, i - start, 0, scratch, on_match, hits);
                start = i + 1;
            }
        }
    }
    double each = (cpu_seconds() - t) / rounds;
    printf("hyperscan %s, %u rules, %ld values, %ld bytes\n", hs_version(), n, values, bytes);
    printf("one buffer:     %.1f MiB/s\n", bytes / one / 1048576);
    printf("value by value: %.1f MiB/s\n", bytes / each / 1048576);
    return 0;
}
EOF
gcc -O2 -o "$work/hs" "$work/hs.c" -lhs
"$work/hs" "$work"
