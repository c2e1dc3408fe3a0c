"""Maps the repo's top-level datasets/, probes/ and experiments/ into the tsham namespace.

Metadata lives in pyproject.toml; this file only computes the package list, so that both
`pip install .` and `pip install -e .` give `tsham.datasets`, `tsham.probes`, `tsham.experiments`
(and no top-level `datasets` module that would shadow the Hugging Face package).
"""

from setuptools import find_packages, setup

ROOTS = {"tsham": "tsham", "tsham.datasets": "datasets", "tsham.probes": "probes", "tsham.experiments": "experiments"}

packages, package_dir = [], {}
for name, path in ROOTS.items():
    package_dir[name] = path
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(path)]

setup(packages=packages, package_dir=package_dir, package_data={"tsham": ["assets/*", "assets/*/*"]})
