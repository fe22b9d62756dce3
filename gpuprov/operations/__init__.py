"""gpuprov's own pyinfra operations: small generators that yield shell commands and call
`host.noop(...)` when the host is already right.

Operations that compare against host state take that state as arguments (`installed`,
`held`, `digests`, ...), which the deploys fill from the one HostState fact they read per
host (a no-op apply costs about one round trip: docs/engine.md). Called without them, the apt
and file operations read small pyinfra facts themselves, so they also work standalone.
"""
