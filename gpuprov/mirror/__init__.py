"""Offline model registry: a Hugging Face Hub-compatible mirror (docs/model-mirror.md).

`store` owns the on-disk format and imports; `server` serves it over HTTP(S) read-only.
"""
