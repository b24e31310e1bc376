# Config -> names and file lists: the validated config and its SweepFiles (lightning_modules/workflow/files.py),
# whose methods are the rules' input functions. Rule files stay declarative and use what is defined here.
import json
import sys

from lightning_modules.core import layout
from lightning_modules.core.checks import ConfigError, canonical
from lightning_modules.core.layout import (ClusterBound, ClusterFigures, ClusteringRun, DiffusionClassifier,
                                           EmbeddingMap, Embeddings, KnnGraph, OodAttack, OodProbe, OodRun, Report,
                                           Selection, Table)
from lightning_modules.core.naming import SLUG_PATTERN
from lightning_modules.core.project import SCHEMA_FILE
from lightning_modules.analysis.published import PUBLISHED_FILE
from lightning_modules.data import files_fingerprint
from lightning_modules.workflow.config import validate_config
from lightning_modules.workflow.files import FIRST_JOB_PRIORITY, LONG_CHAIN_PRIORITY, SweepFiles, wildcard_constraints
from lightning_modules.workflow.sweep import job_resources

try:
    validate_config(config, SCHEMA_FILE)
except ConfigError as error:
    # One line, before any job runs; a traceback would bury it.
    print(error, file=sys.stderr)
    sys.exit(1)


def read_upper_bound(dataset, backbone):
    """The upper cluster bound of one dataset x backbone; waits for its checkpoint (input functions only)."""
    path = checkpoints.upper_cluster_bound.get(dataset=dataset, backbone=backbone).output[0]
    with open(path) as handle:
        return json.load(handle)["bound"]


files = SweepFiles(config, read_upper_bound)
# the store's first file: every job that logs waits for it; ancient, so that logging to the store never reruns a run
TRACKING = ancient(files.results(layout.TRACKING_EXPERIMENT))


wildcard_constraints:
    split=SLUG_PATTERN,
    **wildcard_constraints(),
