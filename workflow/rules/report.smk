rule clustering_table:
    input:
        metrics=clustering_runs("metrics.json"),
        bounds=bound_files(),
        selections=selection_files(),
        published=PUBLISHED_FILE,
    output:
        runs=report(results("tables/clustering.parquet"), caption="../report/tables.rst", category="Tables"),
        bounds=results("tables/cluster_bounds.parquet"),
        selection=report(results("tables/selection.parquet"), caption="../report/tables.rst", category="Tables"),
    log:
        results("logs/tables/clustering.log"),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/clustering_table.py"


rule clustering_report:
    input:
        table_path=results("tables/clustering.parquet"),
        bounds_path=results("tables/cluster_bounds.parquet"),
        selection_path=results("tables/selection.parquet"),
        template=os.path.join(workflow.basedir, "reports", "clustering.ipynb"),
    output:
        notebook=results("reports/clustering.ipynb"),
        html=report(results("reports/clustering.html"), caption="../report/clustering.rst", category="Reports"),
    log:
        results("logs/reports/clustering.log"),
    params:
        tracking_uri=TRACKING_URI,
        experiment=SWEEP,
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/render_report.py"
