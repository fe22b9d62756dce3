"""Data tables (YAML) read by gpuprov.tables."""
