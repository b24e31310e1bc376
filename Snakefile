# clusterlab: embeddings are the unit of work (see docs/architecture.md and README.md).
# Rules are thin: each calls a function in lightning_modules. Nothing heavy is imported here, so a dry
# run or a no-op rerun stays fast.
from snakemake.utils import min_version

min_version("9.0")

# `--configfile` replaces the embedded default instead of being merged into it.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


# Jobs import lightning_modules from this checkout, also inside conda environments
# (--software-deployment-method conda) and on cluster nodes, which inherit the environment.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")]))


# `snakemake --report report.html` (make report): the stage reports and tables with their captions
import mimetypes

mimetypes.add_type("application/vnd.apache.parquet", ".parquet")  # tables are offered as downloads


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/knn.smk"
include: "workflow/rules/cluster.smk"
include: "workflow/rules/ood.smk"
include: "workflow/rules/diffusion.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/claims.smk"


# Local runs: jobs fork from one warm process with the heavy imports done (lightning_modules/services/job_server.py);
# a tiny job then starts in ~0.3 s instead of 2-7 s. Cluster jobs (and --no-hooks) start on their own. A server
# this workflow's environment already points at (one for many sweeps, as the test session starts) is used as it is.
JOB_SERVER = {}


onstart:
    from lightning_modules.services import job_server

    if not (config["job_server"] and workflow.local_exec and workflow.is_main_process):
        job_server.point_jobs_at(None)  # these jobs start on their own, even where the environment names a server
    elif not job_server.serving():
        JOB_SERVER["process"] = job_server.start(files.log("job_server"))
        job_server.point_jobs_at(JOB_SERVER["process"])


onsuccess:
    from lightning_modules.services import job_server

    job_server.stop(JOB_SERVER.pop("process", None))


onerror:
    from lightning_modules.services import job_server

    job_server.stop(JOB_SERVER.pop("process", None))


# Cheap aggregation steps run where Snakemake runs, not as cluster jobs.
localrules:
    all,
    clustering_table,
    clustering_report,
    ood_table,
    ood_report,
    diffusion_table,
    diffusion_report,
    claims,
    claims_report,
    reconcile_tracking,
    finish_sweep,


# Every artifact a user reads, not only the sweep's last marker: Snakemake does not redo a missing file whose
# consumers are up to date, so a deleted table, report, figure folder or run comes back only when it is asked for.
rule all:
    input:
        files.results(layout.TRACKING_SWEEP),  # after every report and the reconciled store: the sweep's last job
        files.sweep_reports(),
        rules.clustering_table.output,
        rules.claims.output,
        rules.ood_table.output if files.ood_pairs else [],
        rules.diffusion_table.output if config["diffusion"]["datasets"] else [],
        files.figure_folders(),
        files.clustering_run_files("metrics.json"),
        files.ood_run_files("metrics.json"),
        files.ood_probe_files("probe.json"),
        files.diffusion_run_files("metrics.json"),
    default_target: True
