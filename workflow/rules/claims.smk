rule claims:
    # The papers' findings as tests over the sweep's tables: a verdict per finding, Holm across the ledger, and
    # whether the analysis is still the one registered before the first result.
    input:
        clustering=files.output(Table, "clustering.parquet"),
        cluster_bounds=files.output(Table, "cluster_bounds.parquet"),
        ood=files.output(Table, "ood.parquet") if files.ood_pairs else [],
        diffusion=files.output(Table, "diffusion.parquet") if config["diffusion"]["datasets"] else [],
        tracking=TRACKING,  # the ledger goes on the sweep's parent run
    output:
        report(files.output(Table, "claims.parquet"), caption="../report/tables.rst", category="Tables"),
    log:
        files.log("claims"),
    params:
        context=files.claims_context(),
        registration=files.results(layout.CLAIMS_REGISTRATION),  # what init_tracking registered before any result
        analysis=canonical({"claims": config.get("claims") or {}}),  # the claims settings it compares
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/claims_table.py"


rule claims_report:
    input:
        table_path=files.output(Table, "claims.parquet"),
        template=os.path.join(workflow.basedir, "reports", "claims.ipynb"),
        tracking=TRACKING,  # where the report is logged
    output:
        notebook=files.output(Report, "claims.ipynb"),
        html=report(files.output(Report, "claims.html"), caption="../report/claims.rst", category="Reports"),
    log:
        files.log("claims_report"),
    params:
        # the ledger's measured error rates (benchmarks/ledger_calibration.py), shown at the report's end
        calibration_path=os.path.join(workflow.basedir, "benchmarks", "ledger_calibration.json"),
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/render_report.py"
