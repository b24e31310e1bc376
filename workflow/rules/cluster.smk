rule cluster:
    input:
        embeddings=lambda wc: f"{embeddings_dir(wc)}/{clustering_split(wc)}.npy",
        labels=lambda wc: f"{embeddings_dir(wc)}/{clustering_split(wc)}.labels.npy",
        # ancient: logging to the store must not make finished runs look out of date
        tracking=ancient(results("tracking/experiment.json")),
    output:
        assignments=results("{dataset}/{backbone}/clusters/{method}/k{k}/seed{seed}/assignments.npy"),
        metrics=results("{dataset}/{backbone}/clusters/{method}/k{k}/seed{seed}/metrics.json"),
    log:
        results("logs/cluster/{dataset}/{backbone}/{method}/k{k}/seed{seed}.log"),
    params:
        split=clustering_split,
        method_params=lambda wc: CLUSTERING["methods"][wc.method],
        tracking_uri=TRACKING_URI,
        experiment=SWEEP,
    threads: 1
    script:
        "../scripts/cluster.py"
