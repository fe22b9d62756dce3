"""Air-gapped bundles: the on-disk format (layout), export to media, verify, import."""
