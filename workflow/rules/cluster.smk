rule cluster:
    input:
        unpack(clustering_inputs),
        tracking=TRACKING,
    output:
        assignments=results(ClusteringRun.pattern("assignments.npy")),
        metrics=results(ClusteringRun.pattern("metrics.json")),
    log:
        logs("cluster/{dataset}/{backbone}/{method}/k{k}/seed{seed}.log"),
    params:
        split=clustering_split,
        method_params=lambda wc: canonical(method_params(wc.method)),
        graph_k=config["knn"]["k"],
        role_tags=lambda wc: canonical(clustering_role_tags(wc)),
    group:
        cluster_group
    threads: 1  # small jobs: two single-threaded ones beat one using both cores
    resources:
        **job_resources(config, "cluster"),
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/cluster.py"


checkpoint upper_cluster_bound:
    # TEMI with beta = 1 at a large K: the clusters it uses bound the useful K (no labels involved).
    input:
        embeddings=lambda wc: f"{embeddings_dir(wc)}/{clustering_split(wc)}.npy",
        knn=lambda wc: knn_file(wc),
        tracking=TRACKING,  # the store exists before the run logs to it
    output:
        results(ClusterBound.pattern("bound.json")),
    log:
        logs("cluster/{dataset}/{backbone}/bound.log"),
    params:
        split=clustering_split,
        graph_k=config["knn"]["k"],
        bound=canonical(CLUSTERING["upper_bound"]),
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
        metrics=setting_runs("metrics.json"),
        assignments=setting_runs("assignments.npy"),
        embeddings=lambda wc: f"{embeddings_dir(wc)}/{clustering_split(wc)}.npy",
    output:
        results(Selection.pattern("selection.json")),
    log:
        logs("selection/{dataset}/{backbone}.log"),
    threads: 1
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/select_clustering.py"


# What the label-free pick of each dataset x backbone looks like: its gallery of most confident members per cluster,
# its cluster x class matrix and the map coloured by its clusters (PNGs, also on the run in MLflow).
rule cluster_figures:
    input:
        selection=results(Selection.pattern("selection.json")),
        assignments=setting_runs("assignments.npy"),
        embeddings=lambda wc: f"{embeddings_dir(wc)}/{clustering_split(wc)}.npy",
        map=map_file,
        tracking=TRACKING,
    output:
        directory(results(ClusterFigures.pattern())),
    log:
        logs("figures/{dataset}/{backbone}.log"),
    params:
        dataset=lambda wc: canonical(DATASETS[wc.dataset]),
        seed=CLUSTERING["seeds"][0],
    threads: 1
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/cluster_figures.py"
