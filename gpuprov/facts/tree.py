"""What the mirror host's tree_sync and venv_from_wheels operations compare against."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


class TreeListing(FactBase):
    """{relative path: (size, sha256 or None)} of the regular files under `path` ({} if
    it does not exist). Files under the `immutable` prefixes (space separated) are not hashed."""

    default = dict

    def command(self, path: str, immutable: str = "") -> str:
        q = shlex.quote(path)
        prefixes = [p.rstrip("/") for p in immutable.split()]
        skip = " ".join(f"! -path {shlex.quote(f'./{p}/*')}" for p in prefixes)
        return (
            f"cd {q} 2>/dev/null || exit 0; "
            "find . -type f -printf 'F\\t%s\\t%P\\n'; "
            f"find . -type f {skip} -printf '%P\\0' | xargs -0r sha256sum"
        )

    def process(self, output: list[str]) -> dict[str, tuple[int, str | None]]:
        sizes: dict[str, int] = {}
        hashes: dict[str, str] = {}
        for line in output:
            if line.startswith("F\t"):
                _, size, rel = line.split("\t", 2)
                sizes[rel] = int(size)
            elif line.strip():
                digest, rel = line.split("  ", 1)
                hashes[rel] = digest
        return {rel: (size, hashes.get(rel)) for rel, size in sizes.items()}


class VenvLink(FactBase):
    """Where `<root>/venv` points, if its gpuprov entry point is there; else ''."""

    default = str

    def command(self, root: str) -> str:
        link = shlex.quote(f"{root}/venv")
        return f"test -x {link}/bin/gpuprov && readlink {link} || true"

    def process(self, output: list[str]) -> str:
        return output[0].strip() if output else ""
