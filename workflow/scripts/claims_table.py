from lightning_modules.services.job_server import hand_over

hand_over()  # local runs: the warm job server runs this job (lightning_modules/services/job_server.py)

from lightning_modules.analysis.claims import registration_state
from lightning_modules.analysis.claims.ledger import build_claims_table, summary_lines
from lightning_modules.core.jobs import job_logging
from lightning_modules.services.tracking import log_sweep_artifacts, tracking_target

with job_logging(snakemake):
    tables = {name: path for name, path in snakemake.input.items() if name not in ("tracking",)}
    registration = registration_state(snakemake.params.registration, snakemake.params.analysis)
    ledger = build_claims_table(tables, snakemake.output[0], snakemake.params.context, registration)
    print("\n".join(summary_lines(ledger)))
    log_sweep_artifacts(**tracking_target(snakemake.input.tracking), paths=[snakemake.output[0]], artifact_dir="claims")
