"""Package layout: the user asked for top-level cli/, deploys/ and templates/ folders.
The wheel leaves out the test bed (gpuprov.testbed).

They install as subpackages of the one import package, so `import gpuprov.cli`,
`gpuprov.deploys.driver` and the templates (package data) work from a wheel and from an
editable install alike. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

MAPPED = ("cli", "deploys", "templates")

# The test bed (gpuprov/testbed/: light hosts, VMs, stand-in NVIDIA programs) is test
# tooling: tests, `make demo` and `make lab-box` use it from a checkout; a site's wheel
# does not carry it.
packages = find_packages(include=["gpuprov", "gpuprov.*"], exclude=["gpuprov.testbed*"])
for top in MAPPED:
    packages += [f"gpuprov.{name}" for name in find_packages(include=[top, f"{top}.*"])]

setup(
    packages=packages,
    package_dir={"gpuprov": "gpuprov", **{f"gpuprov.{top}": top for top in MAPPED}},
)
