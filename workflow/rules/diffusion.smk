rule diffusion_classifier:
    # The data set's feature network for FD and class consistency (diffusion.metrics.networks: classifier).
    output:
        model=results(DiffusionClassifier.pattern("model.pt")),
        metrics=results(DiffusionClassifier.pattern("metrics.json")),
    log:
        logs("diffusion/{dataset}/classifier.log"),
    params:
        dataset=lambda wildcards: canonical(DATASETS[wildcards.dataset]),
        params=canonical(DIFFUSION_CLASSIFIER_PARAMS),
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
def diffusion_run_file(name, seeds=None):
    """`name` of the run at wildcard seed, or of every configured seed (the wildcards dataset and cond kept)."""
    if seeds is None:
        return results(DiffusionRun.pattern(name))
    # the other wildcards stay wildcards: only {seed} is filled in
    return [results(DiffusionRun.pattern(name)).replace("{seed}", str(seed)) for seed in seeds]


ONE_JOB_SEEDS = DIFFUSION["seeds"] if DIFFUSION["seeds_in_one_job"] else None


rule diffusion:
    input:
        unpack(diffusion_cluster_files),
        unpack(diffusion_classifier_files),
        tracking=TRACKING,
    output:
        samples=diffusion_run_file("samples.npy", ONE_JOB_SEEDS),
        labels=diffusion_run_file("labels.npy", ONE_JOB_SEEDS),
        metrics=diffusion_run_file("metrics.json", ONE_JOB_SEEDS),
    log:
        logs("diffusion/{dataset}/{cond}/" + ("seeds.log" if ONE_JOB_SEEDS else "seed{seed}.log")),
    params:
        run=lambda wc: canonical(diffusion_run_params(wc)),
    resources:
        gpu=DIFFUSION_GPUS,
        **job_resources(config, "diffusion"),
    threads: 1  # small denoisers: two single-threaded runs beat one using both cores
    priority: LONG_CHAIN_PRIORITY
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/diffusion.py"


rule diffusion_table:
    input:
        metrics=diffusion_run_files("metrics.json"),
        published=PUBLISHED_FILE,
    output:
        report(results(Table.pattern("diffusion.parquet")), caption="../report/tables.rst", category="Tables"),
    log:
        logs("tables/diffusion.log"),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/diffusion_table.py"


rule diffusion_report:
    input:
        table_path=results(Table.pattern("diffusion.parquet")),
        bounds_path=results(Table.pattern("cluster_bounds.parquet")),
        template=os.path.join(workflow.basedir, "reports", "diffusion.ipynb"),
        tracking=TRACKING,  # where the report is logged
    output:
        notebook=results(Report.pattern("diffusion.ipynb")),
        html=report(results(Report.pattern("diffusion.html")), caption="../report/diffusion.rst", category="Reports"),
    log:
        logs("reports/diffusion.log"),
    params:
        results_dir=os.path.abspath(RESULTS),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/render_report.py"
