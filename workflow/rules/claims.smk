rule claims:
    # The papers' findings as tests over the sweep's tables: a verdict per finding, Holm across the ledger, and
    # whether the analysis is still the one registered before the first result.
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
        registration=results(layout.CLAIMS_REGISTRATION),  # what init_tracking registered before any result
        analysis=canonical({"claims": config.get("claims") or {}}),  # the claims settings it compares
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
    params:
        # the ledger's measured error rates (benchmarks/ledger_calibration.py), shown at the report's end
        calibration_path=os.path.join(workflow.basedir, "benchmarks", "ledger_calibration.json"),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/render_report.py"
