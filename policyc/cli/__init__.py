"""The command line: `policyc.cli.main` lists the commands, one module per command.

Each command module has a plain `run_<command>(..., out, err) -> int` (testable without a
terminal) and the typer wrapper that calls it. Exit codes: 0 ok (warnings allowed), 1 tests
failed or `fmt --check` found a difference, 2 bad input (diagnostics printed), 3 a policyc
bug (reported in one line; POLICYC_DEBUG=1 shows the traceback).
"""
