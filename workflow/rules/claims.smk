rule claims:
    # The papers' findings as tests over the sweep's tables: a verdict per finding, Holm across the ledger.
    input:
        clustering=results(Table.pattern("clustering.parquet")),
        cluster_bounds=results(Table.pattern("cluster_bounds.parquet")),
        ood=results(Table.pattern("ood.parquet")) if OOD_PAIRS else [],
        diffusion=results(Table.pattern("diffusion.parquet")) if DIFFUSION["datasets"] else [],
        tracking=TRACKING,  # the ledger goes on the sweep's parent run
    output:
        report(results(Table.pattern("claims.parquet")), caption="../report/tables.rst", category="Tables"),
    log:
        logs("tables/claims.log"),
    params:
        context=canonical(claims_context(config)),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/claims_table.py"


rule claims_report:
    input:
        table_path=results(Table.pattern("claims.parquet")),
        template=os.path.join(workflow.basedir, "reports", "claims.ipynb"),
        tracking=TRACKING,  # where the report is logged
    output:
        notebook=results(Report.pattern("claims.ipynb")),
        html=report(results(Report.pattern("claims.html")), caption="../report/claims.rst", category="Reports"),
    log:
        logs("reports/claims.log"),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/render_report.py"
