"""``python -m uservec.cli``: how the demo starts its server in a child process."""

from uservec.cli import main

main()
