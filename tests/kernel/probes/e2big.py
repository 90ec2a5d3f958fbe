"""An exec of a `#!` script that fails with E2BIG after bprm_check_security: load_script adds
the interpreter's name and the script's path to the arguments, and with the arguments just
short of the limit only those strings do not fit.

    python3 e2big.py search SCRIPT SECRET       the largest filler size whose exec does not
                                                fail with E2BIG: prints `boundary N`
    python3 e2big.py window SCRIPT SECRET LO HI  exec with each filler size LO..HI, then try to
                                                read SECRET: prints `N EXEC_ERRNO READ` per size
EXEC_ERRNO is 0 when the exec succeeded (the script ran); READ is `read` or `errno N`.
"""

import errno
import os
import sys

FILLERS = 16
FILLER = 128_000   # below MAX_ARG_STRLEN; 16 of them fill most of the 2 MiB argument space


def attempt(script: str, secret: str, n: int) -> str:
    r, w = os.pipe()   # not inherited by the script: empty when the exec succeeds
    pid = os.fork()
    if pid == 0:
        os.close(r)
        env = {f"F{i:02d}": "x" * FILLER for i in range(FILLERS)}
        env["G"] = "y" * n
        code = 0
        try:
            os.execve(script, [script], env)
        except OSError as e:
            code = e.errno
        try:
            with open(secret) as f:
                f.read()
            res = "read"
        except OSError as e:
            res = f"errno {e.errno}"
        os.write(w, f"{code} {res}".encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 100).decode()
    os.close(r)
    os.waitpid(pid, 0)
    return data or "0 -"


def main(argv):
    mode, script, secret = argv[:3]
    if mode == "search":
        lo, hi = 0, FILLER  # attempt(lo) is no E2BIG; attempt(hi) is E2BIG
        assert not attempt(script, secret, lo).startswith(f"{errno.E2BIG} ")
        assert attempt(script, secret, hi).startswith(f"{errno.E2BIG} ")
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if attempt(script, secret, mid).startswith(f"{errno.E2BIG} "):
                hi = mid
            else:
                lo = mid
        print("boundary", lo)
    else:
        for n in range(int(argv[3]), int(argv[4]) + 1):
            print(n, attempt(script, secret, n), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
