rule ood_probe:
    # The linear probe of one label source (classes | clusters | plp), trained once and read by every post-hoc
    # score of every pair with this ID dataset.
    input:
        unpack(files.ood_probe_inputs),
        tracking=TRACKING,
    output:
        probe=files.output(OodProbe, "probe.npz"),
        record=files.output(OodProbe, "probe.json"),
    log:
        files.log("ood_probe", OodProbe),
    params:
        run=files.ood_probe_params,
    threads: 1
    resources:
        **job_resources(config, "ood_probe"),
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/ood_probe.py"


rule ood_score:
    # One scorer on one in x out pair: fit on the ID split, score ID and OOD test embeddings.
    input:
        unpack(files.ood_inputs),
        tracking=TRACKING,
    output:
        scores=files.output(OodRun, "scores.npz"),
        metrics=files.output(OodRun, "metrics.json"),
    log:
        files.log("ood_score", OodRun),
    params:
        run=files.ood_run_params,
    group:
        files.ood_score_group
    threads: 1
    resources:
        **job_resources(config, "ood_score"),
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/ood_score.py"


rule ood_attack:
    # Adversarial OOD images: perturbed towards random ID embeddings; `<scorer>-adv-<style>` runs score them.
    input:
        unpack(files.ood_attack_inputs),
    output:
        embeddings=files.output(OodAttack, "embeddings.npy"),
        indices=files.output(OodAttack, "indices.npy"),
        examples=files.output(OodAttack, "examples.npz"),
        record=files.output(OodAttack, "attack.json"),
    log:
        files.log("ood_attack", OodAttack),
    params:
        run=files.ood_attack_params,
    threads: 1  # a few images through the backbone: a second thread would idle a core (a GPU job on clusters)
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/ood_attack.py"


rule ood_table:
    input:
        metrics=files.ood_run_files("metrics.json"),
        probes=files.ood_probe_files("probe.json"),
        published=PUBLISHED_FILE,
    output:
        table=report(files.output(Table, "ood.parquet"), caption="../report/tables.rst", category="Tables"),
        probes=files.output(Table, "ood_probes.parquet"),
    log:
        files.log("ood_table"),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/ood_table.py"


rule ood_report:
    input:
        table_path=files.output(Table, "ood.parquet"),
        template=os.path.join(workflow.basedir, "reports", "ood.ipynb"),
        tracking=TRACKING,  # where the report is logged
    output:
        notebook=files.output(Report, "ood.ipynb"),
        html=report(files.output(Report, "ood.html"), caption="../report/ood.rst", category="Reports"),
    log:
        files.log("ood_report"),
    params:
        results_dir=os.path.abspath(files.results_dir),
        datasets=canonical(files.datasets),  # the failure cases' images
        pairs=canonical(files.ood_pairs),
        eval_split=config["ood"]["eval_split"],
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/render_report.py"
