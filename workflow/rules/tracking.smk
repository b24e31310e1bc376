rule init_tracking:
    # Creates the MLflow store and the sweep's experiment before parallel jobs log to it: concurrent
    # first use of a fresh SQLite store crashes in its migrations (shared/notes/mlflow-sqlite.md).
    output:
        files.results(layout.TRACKING_EXPERIMENT),
    log:
        files.log("init_tracking"),
    params:
        tracking_uri=files.tracking_uri,
        experiment=config["sweep"],
        artifact_root=files.results(layout.ARTIFACT_STORE),
        sweep=canonical(config),  # on the sweep's parent run
        registration=files.results(layout.CLAIMS_REGISTRATION),  # the claims' analysis, before any result
        tables=files.result(Table()),  # results already there when it registers
    priority: FIRST_JOB_PRIORITY
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/init_tracking.py"


rule reconcile_tracking:
    # After every sweep: the store mirrors metrics.json exactly (one finished run per table row, with all of
    # its metrics); what it repaired is in the output. `make reconcile` reruns it.
    input:
        clustering=files.clustering_run_files("metrics.json"),
        ood=files.ood_run_files("metrics.json"),
        probes=files.ood_probe_files("probe.json"),
        diffusion=files.diffusion_run_files("metrics.json") if config["diffusion"]["datasets"] else [],
        bounds=files.bound_files(),
        tracking=files.results(layout.TRACKING_EXPERIMENT),  # a new tracking target is reconciled too
    output:
        files.results(layout.TRACKING_RECONCILED),
    log:
        files.log("reconcile_tracking"),
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/reconcile_tracking.py"


# The sweep's end: its MLflow parent run (started by init_tracking) ends now, with the headline numbers as metrics
# and the reports in its note. Runs again whenever a report or the store changed, so a rerun moves the end.
rule finish_sweep:
    input:
        reports=files.sweep_reports(),
        reconciled=files.results(layout.TRACKING_RECONCILED),
        tracking=TRACKING,
    output:
        files.results(layout.TRACKING_SWEEP),
    log:
        files.log("finish_sweep"),
    params:
        results_dir=files.results_dir,
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/finish_sweep.py"
