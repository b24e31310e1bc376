rule ood_probe:
    # The linear probe of one label source (classes | clusters | plp), trained once and read by every post-hoc
    # score of every pair with this ID dataset.
    input:
        unpack(ood_probe_inputs),
        tracking=ancient(results("tracking/experiment.json")),
    output:
        probe=results("{dataset}/{backbone}/ood/probes/{source}/probe.npz"),
        record=results("{dataset}/{backbone}/ood/probes/{source}/probe.json"),
    log:
        results("logs/ood/{dataset}/{backbone}/probe-{source}.log"),
    params:
        run=lambda wc: canonical(ood_probe_params(wc)),
        tracking_uri=TRACKING_URI,
        experiment=SWEEP,
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
        tracking=ancient(results("tracking/experiment.json")),
    output:
        scores=results("{dataset}/{backbone}/ood/{ood}/{scorer}/scores.npz"),
        metrics=results("{dataset}/{backbone}/ood/{ood}/{scorer}/metrics.json"),
    log:
        results("logs/ood/{dataset}/{backbone}/{ood}/{scorer}.log"),
    params:
        run=lambda wc: canonical(ood_run_params(wc)),
        tracking_uri=TRACKING_URI,
        experiment=SWEEP,
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
        embeddings=results("{dataset}/{backbone}/ood/{ood}/attacks/{style}/embeddings.npy"),
        indices=results("{dataset}/{backbone}/ood/{ood}/attacks/{style}/indices.npy"),
        examples=results("{dataset}/{backbone}/ood/{ood}/attacks/{style}/examples.npz"),
        record=results("{dataset}/{backbone}/ood/{ood}/attacks/{style}/attack.json"),
    log:
        results("logs/ood/{dataset}/{backbone}/{ood}/attack-{style}.log"),
    params:
        run=lambda wc: canonical(ood_attack_params(wc)),
    threads: 1  # a few images through the backbone: a second thread would idle a core (a GPU job on clusters)
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/ood_attack.py"


rule ood_table:
    input:
        metrics=[results(f"{run_dir}/metrics.json") for run_dir in ood_run_dirs(config, BACKBONES)],
        probes=[results(f"{probe_dir}/probe.json") for probe_dir in ood_probe_dirs(config, BACKBONES)],
        published=PUBLISHED_FILE,
    output:
        table=report(results("tables/ood.parquet"), caption="../report/tables.rst", category="Tables"),
        probes=results("tables/ood_probes.parquet"),
    log:
        results("logs/tables/ood.log"),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/ood_table.py"


rule ood_report:
    input:
        table_path=results("tables/ood.parquet"),
        template=os.path.join(workflow.basedir, "reports", "ood.ipynb"),
    output:
        notebook=results("reports/ood.ipynb"),
        html=report(results("reports/ood.html"), caption="../report/ood.rst", category="Reports"),
    log:
        results("logs/reports/ood.log"),
    params:
        results_dir=os.path.abspath(RESULTS),
        tracking_uri=TRACKING_URI,
        experiment=SWEEP,
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/render_report.py"
