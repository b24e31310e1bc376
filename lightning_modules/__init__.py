"""clusterlab: what frozen, pretrained image features can do without labels.

Every stage of the Snakemake workflow calls a function in this package; nothing here imports a heavy
library at package import time, so the Snakefile can use the registries and the config checks cheaply.
"""

__version__ = "0.1.0"

# The floors of the house, bottom first (docs/architecture.md, "Layers"): a module imports only from its own package
# and from packages on lower floors, never sideways to another package of its floor or up (tests/test_architecture.py
# draws the import graph and checks it).
LAYERS = (
    ("core",),  # primitives: io, naming, registry, layout, contracts, config checks, jobs, training
    ("metrics", "search"),  # formulas; nearest neighbours
    ("services",),  # tracking, its server, the job server, progress
    ("data", "backbones"),  # the images and the networks that embed them
    ("embeddings",),  # the unit of work: one artifact per dataset x backbone
    ("clustering", "ood", "diffusion"),  # the stages, each with its plug-in registries
    ("analysis",),  # tables, published numbers, the claims ledger, reports
    ("workflow",),  # the sweep's grid, the config assembled, the Snakefile's input functions, command lines
)
