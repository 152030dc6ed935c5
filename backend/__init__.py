"""The GPU process: server, jobs, workers, pipelines, stages, export. Never imported by the add-on."""
