"""`python -m services.cli` is the `erasure` command."""

from services.cli.main import main

main()
