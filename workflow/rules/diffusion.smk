rule diffusion_classifier:
    # The data set's feature network for FD and class consistency (diffusion.metrics.networks: classifier).
    output:
        model=results("{dataset}/diffusion/classifier/model.pt"),
        metrics=results("{dataset}/diffusion/classifier/metrics.json"),
    log:
        results("logs/diffusion/{dataset}/classifier.log"),
    params:
        dataset=lambda wildcards: DATASETS[wildcards.dataset],
        params=DIFFUSION_PARAMS,
    threads: 1
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/diffusion_classifier.py"


rule diffusion:
    # One EDM denoiser per dataset x condition x seed (GPU jobs on clusters, `diffusion.devices` GPUs each);
    # scored against the real images in every feature network.
    input:
        unpack(diffusion_cluster_files),
        unpack(diffusion_classifier_files),
        tracking=ancient(results("tracking/experiment.json")),
    output:
        samples=results("{dataset}/diffusion/{cond}/seed{seed}/samples.npy"),
        labels=results("{dataset}/diffusion/{cond}/seed{seed}/labels.npy"),
        metrics=results("{dataset}/diffusion/{cond}/seed{seed}/metrics.json"),
    log:
        results("logs/diffusion/{dataset}/{cond}/seed{seed}.log"),
    params:
        run=diffusion_run_params,
        tracking_uri=TRACKING_URI,
        experiment=SWEEP,
    resources:
        gpu=DIFFUSION_GPUS,
    threads: 1  # small denoisers: two single-threaded runs beat one using both cores
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/diffusion.py"


rule diffusion_table:
    input:
        metrics=diffusion_runs("metrics.json"),
    output:
        results("tables/diffusion.parquet"),
    log:
        results("logs/tables/diffusion.log"),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/diffusion_table.py"


rule diffusion_report:
    input:
        table_path=results("tables/diffusion.parquet"),
        bounds_path=results("tables/cluster_bounds.parquet"),
        template=os.path.join(workflow.basedir, "reports", "diffusion.ipynb"),
    output:
        notebook=results("reports/diffusion.ipynb"),
        html=results("reports/diffusion.html"),
    log:
        results("logs/reports/diffusion.log"),
    params:
        results_dir=os.path.abspath(RESULTS),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/render_report.py"
