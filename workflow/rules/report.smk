rule clustering_table:
    input:
        metrics=clustering_run_files("metrics.json"),
        bounds=bound_files(),
        selections=selection_files(),
        published=PUBLISHED_FILE,
    output:
        runs=report(results(Table.pattern("clustering.parquet")), caption="../report/tables.rst", category="Tables"),
        bounds=results(Table.pattern("cluster_bounds.parquet")),
        selection=report(results(Table.pattern("selection.parquet")), caption="../report/tables.rst", category="Tables"),
    log:
        logs("tables/clustering.log"),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/clustering_table.py"


rule clustering_report:
    input:
        table_path=results(Table.pattern("clustering.parquet")),
        bounds_path=results(Table.pattern("cluster_bounds.parquet")),
        selection_path=results(Table.pattern("selection.parquet")),
        figure_folders=figure_folders(),
        template=os.path.join(workflow.basedir, "reports", "clustering.ipynb"),
        tracking=TRACKING,  # where the report is logged
    output:
        notebook=results(Report.pattern("clustering.ipynb")),
        html=report(results(Report.pattern("clustering.html")), caption="../report/clustering.rst", category="Reports"),
    log:
        logs("reports/clustering.log"),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/render_report.py"
