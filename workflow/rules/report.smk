rule clustering_table:
    input:
        metrics=clustering_runs("metrics.json"),
        bounds=bound_files(),
        selections=selection_files(),
    output:
        runs=results("tables/clustering.parquet"),
        bounds=results("tables/cluster_bounds.parquet"),
        selection=results("tables/selection.parquet"),
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
        html=results("reports/clustering.html"),
    log:
        results("logs/reports/clustering.log"),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/render_report.py"
