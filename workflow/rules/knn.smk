rule knn_graph:
    # Once per dataset x backbone x split; every neighbour-based head reads it.
    input:
        embeddings=results(Embeddings.pattern("{split}.npy")),
        meta=results(Embeddings.pattern("{split}.meta.json")),
    output:
        indices=results(KnnGraph.pattern("{split}.k{n}.npy")),
        similarities=results(KnnGraph.pattern("{split}.k{n}.dist.npy")),
        meta=results(KnnGraph.pattern("{split}.k{n}.meta.json")),
    log:
        logs("knn/{dataset}/{backbone}/{split}.k{n}.log"),
    params:
        search={key: config["knn"][key] for key in ("query_batch", "index", "nlist", "nprobe", "recall_queries")},
    threads: 2
    resources:
        **job_resources(config, "knn_graph"),
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/knn_graph.py"
