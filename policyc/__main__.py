"""`python -m policyc`: the same as the `policyc` command."""

from .cli.main import main

main()
