rule knn_graph:
    # Once per dataset x backbone x split; every neighbour-based head reads it.
    input:
        embeddings=files.output(Embeddings, "{split}.npy"),
        meta=files.output(Embeddings, "{split}.meta.json"),
    output:
        indices=files.output(KnnGraph, "{split}.k{n}.npy"),
        similarities=files.output(KnnGraph, "{split}.k{n}.dist.npy"),
        meta=files.output(KnnGraph, "{split}.k{n}.meta.json"),
    log:
        files.log("knn_graph", KnnGraph, "{split}.k{n}"),
    params:
        search={key: config["knn"][key] for key in ("query_batch", "index", "nlist", "nprobe", "recall_queries")},
    threads: config["knn"]["threads"]
    priority: LONG_CHAIN_PRIORITY  # every head and the upper bound wait on it
    resources:
        **job_resources(config, "knn_graph"),
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/knn_graph.py"
