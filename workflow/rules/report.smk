rule clustering_table:
    input:
        metrics=files.clustering_run_files("metrics.json"),
        bounds=files.bound_files(),
        selections=files.selection_files(),
        published=PUBLISHED_FILE,
    output:
        runs=report(files.output(Table, "clustering.parquet"), caption="../report/tables.rst", category="Tables"),
        bounds=files.output(Table, "cluster_bounds.parquet"),
        selection=report(files.output(Table, "selection.parquet"), caption="../report/tables.rst", category="Tables"),
        curves=files.output(Table, "selection_curves.parquet"),
    log:
        files.log("clustering_table"),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/clustering_table.py"


rule clustering_report:
    input:
        table_path=files.output(Table, "clustering.parquet"),
        bounds_path=files.output(Table, "cluster_bounds.parquet"),
        selection_path=files.output(Table, "selection.parquet"),
        curves_path=files.output(Table, "selection_curves.parquet"),
        figure_folders=files.figure_folders(),
        template=os.path.join(workflow.basedir, "reports", "clustering.ipynb"),
        tracking=TRACKING,  # where the report is logged
    output:
        notebook=files.output(Report, "clustering.ipynb"),
        html=report(files.output(Report, "clustering.html"), caption="../report/clustering.rst", category="Reports"),
    log:
        files.log("clustering_report"),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/render_report.py"
