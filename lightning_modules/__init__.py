"""clusterlab: what frozen, pretrained image features can do without labels.

Every stage of the Snakemake workflow calls a function in this package; nothing here imports a heavy
library at package import time, so the Snakefile can use the registries and the config checks cheaply.
"""

__version__ = "0.1.0"
