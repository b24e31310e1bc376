"""The workflow's logic, importable and tested: the sweep's grid (sweep), the config's validation assembled from
every stage's checks (config) and the Snakefile's input functions (files). The top layer: nothing imports it but
the Snakefile, the job scripts and the command lines."""
