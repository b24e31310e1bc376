rule clustering_table:
    input:
        clustering_runs("metrics.json"),
    output:
        results("tables/clustering.parquet"),
    log:
        results("logs/tables/clustering.log"),
    script:
        "../scripts/clustering_table.py"


rule clustering_report:
    input:
        table=results("tables/clustering.parquet"),
        template=os.path.join(workflow.basedir, "reports", "clustering.ipynb"),
    output:
        notebook=results("reports/clustering.ipynb"),
        html=results("reports/clustering.html"),
    log:
        results("logs/reports/clustering.log"),
    script:
        "../scripts/render_report.py"
