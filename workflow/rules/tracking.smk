rule init_tracking:
    # Creates the MLflow store and the sweep's experiment before parallel jobs log to it: concurrent
    # first use of a fresh SQLite store crashes in its migrations (shared/notes/mlflow-sqlite.md).
    output:
        results(layout.TRACKING_EXPERIMENT),
    log:
        logs("init_tracking.log"),
    params:
        tracking_uri=TRACKING_URI,
        experiment=SWEEP,
        artifact_root=results(layout.ARTIFACT_STORE),
        sweep=canonical(config),  # on the sweep's parent run
        registration=results(layout.CLAIMS_REGISTRATION),  # the claims' analysis, before any result
        tables=results(Table().folder),  # results already there when it registers
    priority: FIRST_JOB_PRIORITY
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/init_tracking.py"


rule reconcile_tracking:
    # After every sweep: the store mirrors metrics.json exactly (one finished run per table row, with all of
    # its metrics); what it repaired is in the output. `make reconcile` reruns it.
    input:
        clustering=clustering_run_files("metrics.json"),
        ood=[result(run, "metrics.json") for run in ood_runs(config, BACKBONES)],
        probes=[result(probe, "probe.json") for probe in ood_probes(config, BACKBONES)],
        diffusion=diffusion_run_files("metrics.json") if DIFFUSION["datasets"] else [],
        bounds=bound_files(),
        tracking=results(layout.TRACKING_EXPERIMENT),  # a new tracking target is reconciled too
    output:
        results(layout.TRACKING_RECONCILED),
    log:
        logs("reconcile_tracking.log"),
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/reconcile_tracking.py"


# The sweep's end: its MLflow parent run (started by init_tracking) ends now, with the headline numbers as metrics
# and the reports in its note. Runs again whenever a report or the store changed, so a rerun moves the end.
rule finish_sweep:
    input:
        reports=SWEEP_REPORTS,
        reconciled=results(layout.TRACKING_RECONCILED),
        tracking=TRACKING,
    output:
        results(layout.TRACKING_SWEEP),
    log:
        logs("finish_sweep.log"),
    params:
        results_dir=RESULTS,
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/finish_sweep.py"
