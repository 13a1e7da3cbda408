"""`python -m services.sandbox`: run the sandbox in the foreground."""

from services.sandbox.server import main

main()
