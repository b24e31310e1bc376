rule embed:
    # The one GPU-heavy step per dataset x backbone; every later stage reads its artifact.
    output:
        embeddings=results(Embeddings.pattern("{split}.npy")),
        labels=results(Embeddings.pattern("{split}.labels.npy")),
        meta=results(Embeddings.pattern("{split}.meta.json")),
    log:
        logs("embed/{dataset}/{backbone}/{split}.log"),
    params:
        dataset=lambda wc: canonical(DATASETS[wc.dataset]),
        backbone=lambda wc: canonical(EMBEDDED_BACKBONES[wc.backbone]),
        # how many threads run the job is not an extraction option: changing it must not redo embeddings
        options=canonical({key: value for key, value in config["embed"].items() if key != "threads"}),
        # changed files on disk change this parameter, and Snakemake re-runs the job and everything after it
        files_fingerprint=lambda wc: files_fingerprint(DATASETS[wc.dataset]),
    threads: config["embed"]["threads"]
    resources:
        **job_resources(config, "embed"),
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/embed.py"


# A 2-D map of one embedding artifact (maps.method), computed once and drawn by the clustering figures.
rule embedding_map:
    input:
        results(Embeddings.pattern("{split}.npy")),
    output:
        coordinates=results(EmbeddingMap.pattern("{split}.npy")),
        rows=results(EmbeddingMap.pattern("{split}.rows.npy")),
    log:
        logs("map/{dataset}/{backbone}/{split}.log"),
    params:
        settings=canonical(config["maps"]),
    threads: 1
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/embedding_map.py"
