rule init_tracking:
    # Creates the MLflow store and the sweep's experiment before parallel jobs log to it: concurrent
    # first use of a fresh SQLite store crashes in its migrations (shared/notes/mlflow-sqlite.md).
    output:
        results("tracking/experiment.json"),
    log:
        results("logs/init_tracking.log"),
    params:
        tracking_uri=TRACKING_URI,
        experiment=SWEEP,
        artifact_root=results("mlartifacts"),
        sweep=canonical(config),  # on the sweep's parent run
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/init_tracking.py"


rule reconcile_tracking:
    # After every sweep: the store mirrors metrics.json exactly (one finished run per table row, with all of
    # its metrics); what it repaired is in the output. `make reconcile` reruns it.
    input:
        clustering=clustering_runs("metrics.json"),
        ood=[results(f"{run_dir}/metrics.json") for run_dir in ood_run_dirs(config, BACKBONES)],
        probes=[results(f"{probe_dir}/probe.json") for probe_dir in ood_probe_dirs(config, BACKBONES)],
        diffusion=diffusion_runs("metrics.json") if DIFFUSION["datasets"] else [],
        bounds=bound_files(),
    output:
        results("tracking/reconciled.json"),
    log:
        results("logs/reconcile_tracking.log"),
    params:
        tracking_uri=TRACKING_URI,
        experiment=SWEEP,
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/reconcile_tracking.py"
