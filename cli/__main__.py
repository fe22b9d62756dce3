"""`python -m gpuprov.cli`: the same entry point as the `gpuprov` script (main() patches
gevent before anything imports sockets)."""

from gpuprov.cli import main

main()
