"""`python -m commcal` is the same as the `commcal` command."""

from commcal.cli import main

main()
