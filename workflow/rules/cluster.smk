rule cluster:
    input:
        unpack(files.clustering_inputs),
        tracking=TRACKING,
    output:
        assignments=files.output(ClusteringRun, "assignments.npy"),
        metrics=files.output(ClusteringRun, "metrics.json"),
    log:
        files.log("cluster", ClusteringRun),
    params:
        split=files.clustering_split,
        method_params=files.method_params,
        graph_k=config["knn"]["k"],
        role_tags=files.clustering_role_tags,
    group:
        files.cluster_group
    threads: 1  # small jobs: two single-threaded ones beat one using both cores
    priority: files.cluster_priority
    resources:
        **job_resources(config, "cluster"),
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/cluster.py"


checkpoint upper_cluster_bound:
    # TEMI with beta = 1 at a large K: the clusters it uses bound the useful K (no labels involved).
    input:
        embeddings=files.fit_embeddings,
        knn=files.knn_file,
        tracking=TRACKING,  # the store exists before the run logs to it
    output:
        files.output(ClusterBound, "bound.json"),
    log:
        files.log("upper_cluster_bound", ClusterBound),
    params:
        split=files.clustering_split,
        graph_k=config["knn"]["k"],
        bound=canonical(config["clustering"]["upper_bound"]),
    threads: 1  # one small head: a second thread barely helps it and would idle a core (a GPU job on clusters)
    priority: LONG_CHAIN_PRIORITY
    resources:
        **job_resources(config, "upper_cluster_bound"),
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/upper_cluster_bound.py"


rule select_clustering:
    # A label-free choice of method and K per dataset x backbone; its regret is measured with the labels after.
    input:
        metrics=files.setting_runs("metrics.json"),
        assignments=files.setting_runs("assignments.npy"),
        embeddings=files.fit_embeddings,
    output:
        files.output(Selection, "selection.json"),
    log:
        files.log("select_clustering", Selection),
    params:
        criterion=config["clustering"]["selection_criterion"],
    threads: 1
    priority: LONG_CHAIN_PRIORITY  # the figures and the reports wait on it
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/select_clustering.py"


# What the label-free pick of each dataset x backbone looks like: its gallery of most confident members per cluster,
# its cluster x class matrix and the map coloured by its clusters (PNGs, also on the run in MLflow).
rule cluster_figures:
    input:
        selection=files.output(Selection, "selection.json"),
        assignments=files.setting_runs("assignments.npy"),
        embeddings=files.fit_embeddings,
        map=files.map_file,
        tracking=TRACKING,
    output:
        directory(files.output(ClusterFigures)),
    log:
        files.log("cluster_figures", ClusterFigures),
    params:
        dataset=lambda wc: canonical(files.datasets[wc.dataset]),
        seed=config["clustering"]["seeds"][0],
    threads: 1
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/cluster_figures.py"
