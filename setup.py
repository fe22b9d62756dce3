"""Package layout: the user asked for top-level cli/, deploys/ and templates/ folders.

They install as subpackages of the one import package, so `import gpuprov.cli`,
`gpuprov.deploys.driver` and the templates (package data) work from a wheel and from an
editable install alike. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

MAPPED = ("cli", "deploys", "templates")

packages = find_packages(include=["gpuprov", "gpuprov.*"])
for top in MAPPED:
    packages += [f"gpuprov.{name}" for name in find_packages(include=[top, f"{top}.*"])]

setup(
    packages=packages,
    package_dir={"gpuprov": "gpuprov", **{f"gpuprov.{top}": top for top in MAPPED}},
)
