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
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/init_tracking.py"
