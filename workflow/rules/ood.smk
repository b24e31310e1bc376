rule ood_probe:
    # The linear probe of one label source (classes | clusters | plp), trained once and read by every post-hoc
    # score of every pair with this ID dataset.
    input:
        unpack(ood_probe_inputs),
        tracking=TRACKING,
    output:
        probe=results(OodProbe.pattern("probe.npz")),
        record=results(OodProbe.pattern("probe.json")),
    log:
        logs("ood/{dataset}/{backbone}/probe-{source}.log"),
    params:
        run=lambda wc: canonical(ood_probe_params(wc)),
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
        unpack(ood_inputs),
        tracking=TRACKING,
    output:
        scores=results(OodRun.pattern("scores.npz")),
        metrics=results(OodRun.pattern("metrics.json")),
    log:
        logs("ood/{dataset}/{backbone}/{ood}/{scorer}.log"),
    params:
        run=lambda wc: canonical(ood_run_params(wc)),
    group:
        ood_score_group
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
        unpack(ood_attack_inputs),
    output:
        embeddings=results(OodAttack.pattern("embeddings.npy")),
        indices=results(OodAttack.pattern("indices.npy")),
        examples=results(OodAttack.pattern("examples.npz")),
        record=results(OodAttack.pattern("attack.json")),
    log:
        logs("ood/{dataset}/{backbone}/{ood}/attack-{style}.log"),
    params:
        run=lambda wc: canonical(ood_attack_params(wc)),
    threads: 1  # a few images through the backbone: a second thread would idle a core (a GPU job on clusters)
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/ood_attack.py"


rule ood_table:
    input:
        metrics=[result(run, "metrics.json") for run in ood_runs(config, BACKBONES)],
        probes=[result(probe, "probe.json") for probe in ood_probes(config, BACKBONES)],
        published=PUBLISHED_FILE,
    output:
        table=report(results(Table.pattern("ood.parquet")), caption="../report/tables.rst", category="Tables"),
        probes=results(Table.pattern("ood_probes.parquet")),
    log:
        logs("tables/ood.log"),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/ood_table.py"


rule ood_report:
    input:
        table_path=results(Table.pattern("ood.parquet")),
        template=os.path.join(workflow.basedir, "reports", "ood.ipynb"),
        tracking=TRACKING,  # where the report is logged
    output:
        notebook=results(Report.pattern("ood.ipynb")),
        html=report(results(Report.pattern("ood.html")), caption="../report/ood.rst", category="Reports"),
    log:
        logs("reports/ood.log"),
    params:
        results_dir=os.path.abspath(RESULTS),
        datasets=canonical(DATASETS),  # the failure cases' images
        pairs=canonical(OOD_PAIRS),
        eval_split=OOD["eval_split"],
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/render_report.py"
