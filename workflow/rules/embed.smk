rule embed:
    # The one GPU-heavy step per dataset x backbone; every later stage reads its artifact.
    output:
        embeddings=files.output(Embeddings, "{split}.npy"),
        labels=files.output(Embeddings, "{split}.labels.npy"),
        meta=files.output(Embeddings, "{split}.meta.json"),
    log:
        files.log("embed", Embeddings, "{split}"),
    params:
        dataset=lambda wc: canonical(files.datasets[wc.dataset]),
        backbone=lambda wc: canonical(files.embedded_backbones[wc.backbone]),
        # how many threads run the job is not an extraction option: changing it must not redo embeddings
        options=canonical({key: value for key, value in config["embed"].items() if key != "threads"}),
        # changed files on disk change this parameter, and Snakemake re-runs the job and everything after it
        files_fingerprint=lambda wc: files_fingerprint(files.datasets[wc.dataset]),
    threads: config["embed"]["threads"]
    priority: LONG_CHAIN_PRIORITY  # everything after waits on it (the demo's digits-lt10 branch started 196 s in)
    resources:
        **job_resources(config, "embed"),
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/embed.py"


# A 2-D map of one embedding artifact (maps.method), computed once and drawn by the clustering figures.
rule embedding_map:
    input:
        files.output(Embeddings, "{split}.npy"),
    output:
        coordinates=files.output(EmbeddingMap, "{split}.npy"),
        rows=files.output(EmbeddingMap, "{split}.rows.npy"),
    log:
        files.log("embedding_map", EmbeddingMap, "{split}"),
    params:
        settings=canonical(config["maps"]),
    threads: 1
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/embedding_map.py"
