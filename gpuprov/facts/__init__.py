"""pyinfra facts built on gpuprov.parsers. `HostState` reads everything the deploys and
`verify` compare against in one SSH round trip."""
