"""Appends numbered lines to several log files and rotates them, the way applications and logrotate do.

Used by integration/tests/filelog.rs while outpost tails the files. Each line is "f<file> <seq:08>" and
every line of every file is written exactly once, so the test can tell a lost line from a repeated one.

Each file's rotations alternate between the two logrotate styles:
  rename        the live file is renamed to <name>.<n> and the writer opens a new <name>
  copytruncate  the live file is copied to <name>.<n> and truncated in place; the writer keeps its
                O_APPEND descriptor, so its next line lands at the new end (offset 0)
Rotated files are kept (the test's include glob matches them).

Usage: logwriter.py DIR FILES LINES_PER_FILE ROTATE_EVERY SLEEP_MS
Prints "done <total>" when every line is written.
"""

import os
import shutil
import sys
import time


def main():
    directory = sys.argv[1]
    files, lines, rotate_every, sleep_ms = (int(a) for a in sys.argv[2:6])
    paths = [os.path.join(directory, f"app{f}.log") for f in range(files)]
    handles = [open(p, "a", buffering=1) for p in paths]
    rotations = [0] * files
    seq = 0
    while seq < lines:
        for f in range(files):
            handles[f].write(f"f{f} {seq:08}\n")
            handles[f].flush()
            if (seq + 1) % rotate_every == 0 and seq + 1 < lines:
                rotations[f] += 1
                rotated = f"{paths[f]}.{rotations[f]}"
                if rotations[f] % 2 == 1:
                    handles[f].close()
                    os.rename(paths[f], rotated)
                    handles[f] = open(paths[f], "a", buffering=1)
                else:
                    shutil.copyfile(paths[f], rotated)
                    with open(paths[f], "r+") as t:
                        t.truncate(0)
        seq += 1
        if sleep_ms:
            time.sleep(sleep_ms / 1000.0)
    for h in handles:
        h.close()
    print(f"done {files * lines}", flush=True)


if __name__ == "__main__":
    main()
