"""`python -m commcal` is the same as the `commcal` command."""

from commcal.entry import main

main()
