rule diffusion_classifier:
    # The data set's feature network for FD and class consistency (diffusion.metrics.networks: classifier).
    output:
        model=files.output(DiffusionClassifier, "model.pt"),
        metrics=files.output(DiffusionClassifier, "metrics.json"),
    log:
        files.log("diffusion_classifier", DiffusionClassifier),
    params:
        dataset=lambda wc: canonical(files.datasets[wc.dataset]),
        params=files.diffusion_classifier_params(),
    threads: 1
    priority: LONG_CHAIN_PRIORITY
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/diffusion_classifier.py"


# One EDM denoiser per dataset x condition x seed (GPU jobs on clusters, `diffusion.devices` GPUs each), scored
# against the real images in every feature network. With diffusion.seeds_in_one_job, one job trains a
# condition's seeds one after the other (tiny CPU runs: one process start-up instead of one per seed); the
# artifacts and MLflow runs are per seed either way.
rule diffusion:
    input:
        unpack(files.diffusion_cluster_files),
        unpack(files.diffusion_classifier_files),
        tracking=TRACKING,
    output:
        samples=files.diffusion_outputs("samples.npy"),
        labels=files.diffusion_outputs("labels.npy"),
        metrics=files.diffusion_outputs("metrics.json"),
    log:
        files.diffusion_log(),
    params:
        run=files.diffusion_run_params,
    resources:
        gpu=files.diffusion_gpus,
        **job_resources(config, "diffusion"),
    threads: 1  # small denoisers: two single-threaded runs beat one using both cores
    priority: LONG_CHAIN_PRIORITY
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/diffusion.py"


rule diffusion_table:
    input:
        metrics=files.diffusion_run_files("metrics.json"),
        published=PUBLISHED_FILE,
    output:
        report(files.output(Table, "diffusion.parquet"), caption="../report/tables.rst", category="Tables"),
    log:
        files.log("diffusion_table"),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/diffusion_table.py"


rule diffusion_report:
    input:
        table_path=files.output(Table, "diffusion.parquet"),
        bounds_path=files.output(Table, "cluster_bounds.parquet"),
        template=os.path.join(workflow.basedir, "reports", "diffusion.ipynb"),
        tracking=TRACKING,  # where the report is logged
    output:
        notebook=files.output(Report, "diffusion.ipynb"),
        html=report(files.output(Report, "diffusion.html"), caption="../report/diffusion.rst", category="Reports"),
    log:
        files.log("diffusion_report"),
    params:
        results_dir=os.path.abspath(files.results_dir),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/render_report.py"
